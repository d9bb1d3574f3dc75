package kubestore

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// enumText turns a proto enum value into the word the CRDs use:
// LEASE_REASON_PREEMPTION_NOTICE becomes PreemptionNotice. The zero
// (unspecified) value becomes "", which the resources leave out.
func enumText(e protoreflect.Enum) string {
	return enumWord(e.Descriptor(), e.Number())
}

func enumWord(d protoreflect.EnumDescriptor, n protoreflect.EnumNumber) string {
	if n == 0 {
		return ""
	}
	v := d.Values().ByNumber(n)
	if v == nil {
		return fmt.Sprintf("Unknown%d", n)
	}
	var b strings.Builder
	for _, w := range strings.Split(strings.TrimPrefix(string(v.Name()), enumPrefix(d)), "_") {
		if w != "" {
			b.WriteString(w[:1])
			b.WriteString(strings.ToLower(w[1:]))
		}
	}
	return b.String()
}

// parseEnum is enumText's inverse; "" is the zero value.
func parseEnum(d protoreflect.EnumDescriptor, text string) (protoreflect.EnumNumber, error) {
	if text == "" {
		return 0, nil
	}
	values := d.Values()
	for i := range values.Len() {
		if n := values.Get(i).Number(); n != 0 && enumWord(d, n) == text {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%q is not a %s", text, d.Name())
}

// enumPrefix is the prefix every value name of the enum carries:
// LEASE_REASON_ for LeaseReason.
func enumPrefix(d protoreflect.EnumDescriptor) string {
	var b strings.Builder
	for i, r := range string(d.Name()) {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String()) + "_"
}
