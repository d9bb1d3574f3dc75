package netsim

import "time"

// Link defaults, applied when the Topology leaves a field zero.
const (
	// defaultMTU is Ethernet's.
	defaultMTU = 1500
	// defaultQueueBytes is the default of Link.QueueBytes (64 KiB), about a
	// home router's buffer.
	defaultQueueBytes = 64 << 10
)

// pipe is one direction of a Link: a FIFO that loses, queues, serializes at
// the link's bandwidth and delays packets, then hands them to out.
//
// Jitter never reorders: a packet leaves no earlier than the one before it,
// as on a single queue. Its delay stays within [Latency, Latency+Jitter).
type pipe struct {
	name        string
	link        Link
	out         func(*packet)
	busyUntil   time.Time // when the transmitter finishes what it holds
	backlog     []queued  // packets not yet fully transmitted, oldest first
	backlogSize int       // their bytes
	lastArrival time.Time
}

type queued struct {
	done time.Time
	size int
}

func newPipe(name string, l Link, out func(*packet)) *pipe {
	if l.MTU == 0 {
		l.MTU = defaultMTU
	}
	if l.QueueBytes == 0 {
		l.QueueBytes = defaultQueueBytes
	}
	return &pipe{name: name, link: l, out: out}
}

// send puts p on the pipe; callers hold n.mu.
func (n *Network) send(pp *pipe, p *packet) {
	now := time.Now()
	l := pp.link
	if !p.reliable() {
		if p.size > l.MTU {
			n.drop(p, pp.name, DropMTU)
			return
		}
		if l.Loss > 0 && n.rand.Float64() < l.Loss {
			n.drop(p, pp.name, DropLoss)
			return
		}
	}
	leave := now
	if l.Bandwidth > 0 {
		for len(pp.backlog) > 0 && !pp.backlog[0].done.After(now) {
			pp.backlogSize -= pp.backlog[0].size
			pp.backlog = pp.backlog[1:]
		}
		if !p.reliable() && pp.backlogSize+p.size > l.QueueBytes {
			n.drop(p, pp.name, DropQueueFull)
			return
		}
		start := later(now, pp.busyUntil)
		leave = start.Add(transmitTime(p.size, l.Bandwidth))
		pp.busyUntil = leave
		pp.backlog = append(pp.backlog, queued{done: leave, size: p.size})
		pp.backlogSize += p.size
	}
	arrive := leave.Add(l.Latency)
	if l.Jitter > 0 {
		arrive = arrive.Add(time.Duration(n.rand.Int64N(int64(l.Jitter))))
	}
	arrive = later(arrive, pp.lastArrival)
	pp.lastArrival = arrive
	n.schedule(arrive, func() {
		n.emit(EventArrive, p, pp.name, NotDropped)
		pp.out(p)
	})
}

// transmitTime is how long size bytes take at bandwidth bits per second,
// rounded up to the nanosecond.
func transmitTime(size int, bandwidth int64) time.Duration {
	bits := int64(size) * 8 * int64(time.Second)
	return time.Duration((bits + bandwidth - 1) / bandwidth)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
