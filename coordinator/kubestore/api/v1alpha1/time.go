package v1alpha1

import (
	"encoding/json"
	"fmt"
	"time"
)

// Time is a point in time kept to the nanosecond, written in RFC 3339.
// metav1.Time keeps whole seconds, which would reorder leases made within
// one second and end leases early by up to a second.
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Format=date-time
type Time struct {
	time.Time `json:"-"`
}

// NewTime returns t as a *Time, or nil for the zero time.
func NewTime(t time.Time) *Time {
	if t.IsZero() {
		return nil
	}
	return &Time{Time: t}
}

// DeepCopyInto copies the time; time.Time is a value.
func (t *Time) DeepCopyInto(out *Time) { *out = *t }

// MarshalJSON writes the time in RFC 3339 with nanoseconds, in UTC.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// UnmarshalJSON reads an RFC 3339 time; null is the zero time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("time: want an RFC 3339 string, got %s", b)
	}
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("time %q: %w", s, err)
	}
	t.Time = parsed
	return nil
}
