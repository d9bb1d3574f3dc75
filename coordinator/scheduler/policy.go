package scheduler

import (
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Policy is an access policy: which clients may lease the exporters it
// selects, and on what terms.
type Policy struct {
	Name      string
	Exporters labels.Selector
	Rules     []Rule
}

// Rule grants the clients it selects access on its terms.
type Rule struct {
	Clients     labels.Selector
	Priority    int32
	MaxDuration time.Duration // zero: no maximum
	Preemptible bool
}

// Terms are what a lease gets on one exporter.
type Terms struct {
	Priority    int32
	Preemptible bool
}

// Access is the verdict of the policies for one client, exporter and
// duration.
type Access struct {
	Allowed bool
	Terms   Terms
	// When denied because of the duration: the longest any matching rule
	// allows.
	MaxDuration time.Duration
	// Governed is false when no policy selects the exporter: then it is open
	// to every client at priority 0.
	Governed bool
}

// Evaluate applies the policies to a client (by its labels) leasing an
// exporter (by its labels) for d. Of the rules that select the client and
// allow d, the one with the highest priority applies; at equal priority a
// rule that is not preemptible wins.
func Evaluate(policies []Policy, client, exporter labels.Labels, d time.Duration) Access {
	var best *Rule
	var acc Access
	for i := range policies {
		p := &policies[i]
		if !p.Exporters.Matches(exporter) {
			continue
		}
		acc.Governed = true
		for j := range p.Rules {
			r := &p.Rules[j]
			if !r.Clients.Matches(client) {
				continue
			}
			if r.MaxDuration != 0 && r.MaxDuration < d {
				acc.MaxDuration = max(acc.MaxDuration, r.MaxDuration)
				continue
			}
			if best == nil || r.Priority > best.Priority || r.Priority == best.Priority && best.Preemptible && !r.Preemptible {
				best = r
			}
		}
	}
	if !acc.Governed {
		return Access{Allowed: true}
	}
	if best == nil {
		return acc
	}
	return Access{Allowed: true, Governed: true, Terms: Terms{Priority: best.Priority, Preemptible: best.Preemptible}}
}
