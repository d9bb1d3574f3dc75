package netsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
)

// Errors of Network lookups, for errors.Is.
var (
	ErrUnknownHost = errors.New("no such host in the topology")
	ErrUnknownSite = errors.New("no such site in the topology")
)

// randStream is the fixed second word of the PCG seed, so that
// Topology.Seed alone decides every random choice.
const randStream = 0x6a756d706d657368 // "jumpmesh"

// Network is a running simulation of a Topology. Packets move through it in
// the time of the time package: virtual under testing/synctest, real
// otherwise.
//
// Create it inside the synctest bubble that uses it, and Close it there (a
// t.Cleanup registered inside the bubble does).
type Network struct {
	// mu guards everything that changes while the network runs: links, NAT
	// tables, sockets, TCP connections, the random source and the events.
	mu     sync.Mutex
	rand   *rand.Rand
	trace  func(Event) // nil when tracing is off
	events eventQueue
	seq    uint64
	closed bool

	wake    chan struct{} // an earlier event was scheduled
	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed when run returns

	// Set by New, then only read.
	nodes   map[string]*Node
	public  map[netip.Addr]*Node
	routers map[netip.Addr]*router
	sites   map[string]*router
}

// New checks t (see Topology.Validate) and starts simulating it. Hosts
// without an address get one in order: public hosts 203.0.113.1, .2, ...;
// the i-th site's router (counting from 0) 198.51.100.(i+1); the i-th site's
// hosts 192.168.(i+1).2, .3, ...
//
// Packet tracing is off unless NETSIM_TRACE=1 is set or WithTrace is given.
func New(t Topology, opts ...Option) (*Network, error) {
	plan, err := t.plan()
	if err != nil {
		return nil, fmt.Errorf("netsim: %w", err)
	}
	n := &Network{
		rand:    rand.New(rand.NewPCG(uint64(t.Seed), randStream)),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		nodes:   map[string]*Node{},
		public:  map[netip.Addr]*Node{},
		routers: map[netip.Addr]*router{},
		sites:   map[string]*router{},
	}
	if fn := traceFromEnv(); fn != nil {
		n.addTracer(fn)
	}
	for _, o := range opts {
		o(n)
	}
	for _, h := range plan.topo.Public {
		n.public[h.Addr] = n.newNode(h, n.internet)
	}
	for i, s := range plan.topo.Sites {
		r := &router{
			name:     "router " + s.Name,
			addr:     plan.routers[i],
			nat:      newNAT(s.NAT),
			blockUDP: s.Firewall.BlockUDP,
			lan:      map[netip.Addr]*Node{},
		}
		if len(s.Firewall.AllowTCPPorts) > 0 {
			r.allowTCP = map[uint16]bool{}
			for _, p := range s.Firewall.AllowTCPPorts {
				r.allowTCP[p] = true
			}
		}
		r.up = newPipe("uplink "+s.Name+" out", s.Uplink, n.internet)
		r.down = newPipe("uplink "+s.Name+" in", s.Uplink, func(p *packet) { n.toLAN(r, p) })
		for _, h := range s.Hosts {
			r.lan[h.Addr] = n.newNode(h, func(p *packet) { n.fromLAN(r, p) })
		}
		n.routers[r.addr] = r
		n.sites[s.Name] = r
	}
	go n.run()
	return n, nil
}

// Host returns the simulated node of the topology host called name.
func (n *Network) Host(name string) (*Node, error) {
	nd := n.nodes[name]
	if nd == nil {
		return nil, fmt.Errorf("netsim: host %q: %w", name, ErrUnknownHost)
	}
	return nd, nil
}

// RouterAddr returns the public address of the router of the site called
// name: the address its hosts' traffic leaves from.
func (n *Network) RouterAddr(site string) (netip.Addr, error) {
	r := n.sites[site]
	if r == nil {
		return netip.Addr{}, fmt.Errorf("netsim: site %q: %w", site, ErrUnknownSite)
	}
	return r.addr, nil
}

// Close stops the network: packets in flight are dropped, every socket,
// listener and connection is closed (blocked calls return net.ErrClosed),
// and the network's goroutine ends before Close returns.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.events = nil
	for _, nd := range n.nodes {
		nd.closeAll()
	}
	n.mu.Unlock()
	close(n.stop)
	<-n.stopped
	return nil
}
