package netsim

import (
	"sync"
	"time"
)

// deadline is a net.Conn read or write deadline: a channel that is closed
// once the deadline passes, replaced whenever the deadline moves. Waiting on
// a channel (not a mutex) keeps a blocked reader "durably blocked" for
// testing/synctest, so virtual time can advance past it.
type deadline struct {
	mu      sync.Mutex
	gen     uint64 // bumped on every set, so a stale timer does nothing
	timer   *time.Timer
	expired chan struct{}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.expired == nil || isClosed(d.expired) {
		d.expired = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.expired)
		return
	}
	gen, ch := d.gen, d.expired
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			close(ch)
		}
	})
}

// wait returns a channel closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.expired == nil {
		d.expired = make(chan struct{})
	}
	return d.expired
}

// passed reports whether the deadline has passed.
func (d *deadline) passed() bool { return isClosed(d.wait()) }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// notify wakes whoever waits on ch without ever blocking; ch has room for one
// wake-up, which is all a waiter needs to look again.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deadlines gives a conn the deadline methods of net.Conn.
type deadlines struct {
	readDeadline, writeDeadline deadline
}

func (d *deadlines) SetDeadline(t time.Time) error {
	d.readDeadline.set(t)
	d.writeDeadline.set(t)
	return nil
}

func (d *deadlines) SetReadDeadline(t time.Time) error {
	d.readDeadline.set(t)
	return nil
}

func (d *deadlines) SetWriteDeadline(t time.Time) error {
	d.writeDeadline.set(t)
	return nil
}
