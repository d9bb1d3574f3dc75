package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/netsim"
)

// The delay program replaces netem, which this kernel lacks: an iptables
// NFQUEUE rule in a router namespace's FORWARD chain hands every forwarded
// packet to a queue; the program holds each packet for the latency (plus
// jitter) of the link it came in on and of the link it goes out on, drops it
// with the links' loss probability, and then lets it go with NF_ACCEPT.
//
// It runs in the test's own process: the netlink socket is opened inside the
// router's namespace and stays bound to it, so there is no helper process to
// leak, and stopping it is closing a socket.
//
// Queue overflow is tail drop, as on a real link: the kernel drops packets that
// find maxQueued packets already held (counted in the queue_dropped column of
// /proc/net/netfilter/nfnetlink_queue inside the namespace). The rule's
// --queue-bypass lets packets through undelayed only while no delay program is
// bound (before it starts and after it stops).
const (
	// queueNum is the NFQUEUE number; queues are per namespace, so every
	// router uses the same one.
	queueNum = 0
	// maxQueued bounds the packets held at once, so a path sustains
	// maxQueued/latency packets per second: 200k at 20 ms, more than tests
	// on a 2-core machine send (a UDP flood from one socket reached 340k
	// and lost the excess to tail drop, as a real queue would).
	maxQueued = 4096
	// socketBuffer holds maxQueued metadata-only messages (each costs about
	// 1 KiB of socket memory), so the socket never overflows before the
	// queue does; a lost message would strand its packet in the kernel.
	socketBuffer = 8 << 20
	// readBatch bounds the messages read per wakeup so that releasing due
	// packets is never starved by a flood.
	readBatch = 64
	// verdictBatch is how many verdicts go to the kernel in one write.
	verdictBatch = 64
)

// shape is what a link does to each packet crossing it.
type shape struct {
	latency, jitter time.Duration
	loss            float64
}

func shapeOf(l netsim.Link) shape {
	return shape{latency: l.Latency, jitter: l.Jitter, loss: l.Loss}
}

func (s shape) isZero() bool { return s == shape{} }

// delayer is the delay program for one namespace.
type delayer struct {
	ns     string
	conn   *netlink.Conn
	raw    syscall.RawConn
	shapes []shape // by ifindex
	rng    *rand.Rand
	start  time.Time
	held   heldQueue
	// deadline is the read deadline last set, to skip redundant updates.
	deadline time.Time

	in      []byte                // receive buffer
	out     []byte                // pending verdicts
	ioErr   error                 // set by read and write, which cannot return one
	readFn  func(fd uintptr) bool // d.read, bound once so Read does not allocate
	writeFn func(fd uintptr) bool

	overruns  int // ENOBUFS: the socket overflowed (should not happen, see socketBuffer)
	kernelErr int // NLMSG_ERROR replies, e.g. a verdict for an unknown id

	stopping atomic.Bool
	done     chan struct{}
	err      error // why run ended, read after done
}

// newDelayer binds the queue inside the namespace whose handle is nsFD and
// returns a delayer that shapes packets by their interfaces' links.
func newDelayer(ns string, nsFD int, shapes map[int]shape, seed uint64) (*delayer, error) {
	d := makeDelayer(ns, shapes, seed)
	if err := d.open(nsFD); err != nil {
		return nil, fmt.Errorf("delay program in %s: %w", ns, err)
	}
	return d, nil
}

// makeDelayer sets up everything but the socket.
func makeDelayer(ns string, shapes map[int]shape, seed uint64) *delayer {
	d := &delayer{
		ns:    ns,
		start: time.Now(),
		rng:   rand.New(rand.NewPCG(seed, 0x6a756d706d657368)), // "jumpmesh"
		in:    make([]byte, 64<<10),
		out:   make([]byte, 0, verdictBatch*verdictMsgLen),
		held:  make(heldQueue, 0, maxQueued),
		done:  make(chan struct{}),
	}
	maxIndex := 0
	for i := range shapes {
		maxIndex = max(maxIndex, i)
	}
	d.shapes = make([]shape, maxIndex+1)
	for i, s := range shapes {
		d.shapes[i] = s
	}
	d.readFn = d.read
	d.writeFn = d.write
	return d
}

func (d *delayer) open(nsFD int) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFD})
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	if err := d.bind(conn); err != nil {
		_ = conn.Close()
		return err
	}
	d.conn = conn
	return nil
}

func (d *delayer) bind(conn *netlink.Conn) error {
	if err := conn.SetReadBuffer(socketBuffer); err != nil {
		return fmt.Errorf("set socket buffer: %w", err)
	}
	if err := bindQueue(conn, queueNum, maxQueued); err != nil {
		return err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw netlink socket: %w", err)
	}
	d.raw = raw
	return nil
}

// run starts the program; it runs until stop.
func (d *delayer) run() {
	go func() {
		defer close(d.done)
		d.err = d.loop()
		if d.err != nil {
			slog.Error("netsim/kernel: delay program stopped", "namespace", d.ns, "err", d.err)
		}
	}()
}

// stop ends the program and reports why it ended early, if it did. Packets
// still held are dropped by the kernel when the queue unbinds; the lab removes
// the NFQUEUE rule first, so only packets already in flight are lost.
func (d *delayer) stop() error {
	d.stopping.Store(true)
	cerr := d.conn.Close()
	<-d.done
	if d.overruns > 0 || d.kernelErr > 0 {
		slog.Warn("netsim/kernel: delay program saw losses", "namespace", d.ns,
			"socket_overruns", d.overruns, "kernel_errors", d.kernelErr)
	}
	if d.err != nil {
		return fmt.Errorf("delay program in %s: %w", d.ns, d.err)
	}
	if cerr != nil {
		return fmt.Errorf("delay program in %s: close: %w", d.ns, cerr)
	}
	return nil
}

func (d *delayer) loop() error {
	for {
		d.release(time.Since(d.start))
		if err := d.flush(); err != nil {
			return d.ended(err)
		}
		var deadline time.Time
		if len(d.held) > 0 {
			deadline = d.start.Add(d.held[0].due)
		}
		if !deadline.Equal(d.deadline) {
			if err := d.conn.SetReadDeadline(deadline); err != nil {
				return d.ended(err)
			}
			d.deadline = deadline
		}
		err := d.raw.Read(d.readFn)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return d.ended(err)
		}
		if d.ioErr != nil {
			return d.ended(d.ioErr)
		}
	}
}

// ended turns the error that ended the loop into nil when stop caused it.
func (d *delayer) ended(err error) error {
	if d.stopping.Load() {
		return nil
	}
	return err
}

// read drains up to readBatch messages; it reports false (wait for more)
// only when none was there.
func (d *delayer) read(fd uintptr) bool {
	for got := 0; got < readBatch; {
		n, err := unix.Read(int(fd), d.in)
		switch {
		case err == unix.EAGAIN:
			return got > 0
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS:
			d.overruns++
			if d.overruns == 1 {
				slog.Warn("netsim/kernel: delay program socket overflowed; some packets stay queued", "namespace", d.ns)
			}
			continue
		case err != nil:
			d.ioErr = fmt.Errorf("read nfqueue: %w", err)
			return true
		}
		got++
		if err := d.handle(d.in[:n], time.Since(d.start)); err != nil {
			d.ioErr = err
			return true
		}
	}
	return true
}

// handle schedules every packet in one datagram.
func (d *delayer) handle(b []byte, now time.Duration) error {
	for len(b) > 0 {
		typ, payload, rest, err := nextMessage(b)
		if err != nil {
			return err
		}
		b = rest
		switch typ {
		case msgTypePacket:
			p, err := parsePacket(payload)
			if err != nil {
				return err
			}
			d.schedule(p, now)
		case unix.NLMSG_ERROR:
			errno, err := parseError(payload)
			if err != nil {
				return err
			}
			if errno != 0 {
				d.kernelErr++
				if d.kernelErr == 1 {
					slog.Warn("netsim/kernel: kernel refused a verdict", "namespace", d.ns, "err", errno)
				}
			}
		}
	}
	return nil
}

func (d *delayer) schedule(p queuedPacket, now time.Duration) {
	in, out := d.shape(p.indev), d.shape(p.outdev)
	if d.lost(in.loss) || d.lost(out.loss) {
		d.verdict(p.id, nfDrop)
		return
	}
	delay := in.latency + out.latency + d.jitter(in.jitter) + d.jitter(out.jitter)
	if delay <= 0 {
		d.verdict(p.id, nfAccept)
		return
	}
	d.held.push(held{due: now + delay, id: p.id})
}

func (d *delayer) shape(ifindex uint32) shape {
	if int(ifindex) < len(d.shapes) {
		return d.shapes[ifindex]
	}
	return shape{}
}

func (d *delayer) lost(p float64) bool { return p > 0 && d.rng.Float64() < p }

func (d *delayer) jitter(j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	return time.Duration(d.rng.Int64N(int64(j)))
}

// release queues verdicts for every packet due by now.
func (d *delayer) release(now time.Duration) {
	for len(d.held) > 0 && d.held[0].due <= now {
		d.verdict(d.held.pop().id, nfAccept)
	}
}

// verdict queues one verdict, writing the batch when it is full. A failed
// write surfaces from the next flush.
func (d *delayer) verdict(id, v uint32) {
	if len(d.out)+verdictMsgLen > cap(d.out) {
		_ = d.flush()
	}
	d.out = appendVerdict(d.out, queueNum, id, v)
}

func (d *delayer) flush() error {
	if len(d.out) == 0 {
		return nil
	}
	err := d.raw.Write(d.writeFn)
	if err == nil {
		err = d.ioErr
	}
	d.out = d.out[:0]
	return err
}

func (d *delayer) write(fd uintptr) bool {
	for {
		_, err := unix.Write(int(fd), d.out)
		switch err {
		case nil:
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			d.ioErr = fmt.Errorf("write verdicts: %w", err)
			return true
		}
	}
}

// held is one packet waiting for its verdict.
type held struct {
	due time.Duration // since delayer.start
	id  uint32
}

// heldQueue is a binary min-heap on due. It is typed rather than built on
// container/heap, whose interface{} values would allocate per packet.
type heldQueue []held

func (q *heldQueue) push(h held) {
	*q = append(*q, h)
	s := *q
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent].due <= s[i].due {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (q *heldQueue) pop() held {
	s := *q
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l].due < s[smallest].due {
			smallest = l
		}
		if r < len(s) && s[r].due < s[smallest].due {
			smallest = r
		}
		if smallest == i {
			break
		}
		s[i], s[smallest] = s[smallest], s[i]
		i = smallest
	}
	*q = s
	return top
}
