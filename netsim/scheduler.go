package netsim

import (
	"container/heap"
	"time"
)

// event is something the network does at a given time: a packet leaving a
// link.
type event struct {
	at  time.Time
	seq uint64 // order among events due at the same time: first scheduled, first run
	fn  func()
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// schedule runs fn at time at, under n.mu; callers hold n.mu. A closed
// network schedules nothing.
func (n *Network) schedule(at time.Time, fn func()) {
	if n.closed {
		return
	}
	n.seq++
	heap.Push(&n.events, event{at: at, seq: n.seq, fn: fn})
	if n.events[0].seq == n.seq {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// run is the network's only goroutine: it runs due events in (time, order of
// scheduling) order, so a run repeats exactly, and sleeps on a timer until
// the next one. Under testing/synctest the timer is virtual.
func (n *Network) run() {
	defer close(n.stopped)
	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	for {
		n.mu.Lock()
		now := time.Now()
		for len(n.events) > 0 && !n.events[0].at.After(now) {
			e := heap.Pop(&n.events).(event)
			e.fn()
		}
		next := time.Duration(-1)
		if len(n.events) > 0 {
			next = n.events[0].at.Sub(now)
		}
		n.mu.Unlock()
		if next >= 0 {
			timer.Reset(next)
		}
		select {
		case <-timer.C:
		case <-n.wake:
			timer.Stop()
		case <-n.stop:
			return
		}
	}
}
