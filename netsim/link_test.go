package netsim

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// pair is two public hosts, a and b, with the given links.
func pair(seed int64, a, b Link) Topology {
	return Topology{Seed: seed, Public: []Host{{Name: "a", Link: a}, {Name: "b", Link: b}}}
}

// echo answers every datagram on pc until pc is closed.
func echo(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if _, err := pc.WriteTo(buf[:k], from); err != nil {
			return
		}
	}
}

// TestRoundTrip: a round trip takes exactly twice the sum of the latencies on
// the path.
func TestRoundTrip(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		topo Topology
		want time.Duration
	}{
		{
			name: "public to public",
			topo: pair(1, Link{Latency: 30 * ms}, Link{Latency: 20 * ms}),
			want: 100 * ms,
		},
		{
			name: "site to public",
			topo: Topology{
				Public: []Host{{Name: "b", Link: Link{Latency: 10 * ms}}},
				Sites: []Site{{
					Name:   "home",
					Uplink: Link{Latency: 15 * ms},
					Hosts:  []Host{{Name: "a", Link: Link{Latency: 5 * ms}}},
				}},
			},
			want: 60 * ms,
		},
		{
			name: "same LAN",
			topo: Topology{Sites: []Site{{
				Name:   "lab",
				Uplink: Link{Latency: time.Second},
				Hosts:  []Host{{Name: "a", Link: Link{Latency: 2 * ms}}, {Name: "b", Link: Link{Latency: 3 * ms}}},
			}}},
			want: 10 * ms,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := start(t, tt.topo)
				a, b := host(t, n, "a"), host(t, n, "b")
				go echo(listenUDP(t, b, ":7"))
				ac := listenUDP(t, a, ":0")
				begin := time.Now()
				send(t, ac, udpAddr(b.Addr(), 7), "ping")
				r, ok := recv(t, ac, time.Minute)
				require.True(t, ok)
				require.Equal(t, "ping", r.payload)
				require.Equal(t, tt.want, r.at.Sub(begin))
			})
		})
	}
}

// TestJitter: one-way delays stay in [Latency, Latency+Jitter) and spread
// over the range.
func TestJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			latency = 50 * time.Millisecond
			jitter  = 20 * time.Millisecond
			count   = 500
			gap     = 30 * time.Millisecond // more than jitter: no packet waits for the one before
		)
		n := start(t, pair(3, Link{Latency: latency, Jitter: jitter}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		ac, bc := listenUDP(t, a, ":0"), listenUDP(t, b, ":9")
		sent := make([]time.Time, count)
		go func() {
			for i := range count {
				sent[i] = time.Now()
				_, _ = ac.WriteTo([]byte(strconv.Itoa(i)), udpAddr(b.Addr(), 9))
				time.Sleep(gap)
			}
		}()
		lo, hi := time.Hour, time.Duration(0)
		var sum time.Duration
		for range count {
			r, ok := recv(t, bc, time.Second)
			require.True(t, ok)
			i, err := strconv.Atoi(r.payload)
			require.NoError(t, err)
			d := r.at.Sub(sent[i])
			lo, hi, sum = min(lo, d), max(hi, d), sum+d
		}
		require.GreaterOrEqual(t, lo, latency)
		require.Less(t, hi, latency+jitter)
		require.Less(t, lo, latency+jitter/10, "the delays should spread over the jitter range")
		require.Greater(t, hi, latency+jitter*9/10, "the delays should spread over the jitter range")
		require.InDelta(t, float64(latency+jitter/2), float64(sum/count), float64(jitter/10), "mean delay")
	})
}

// TestLossRate: over many packets the loss rate matches the link's Loss
// within five standard deviations, for several seeds.
func TestLossRate(t *testing.T) {
	const (
		count = 10000
		loss  = 0.1
	)
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracer
				n := start(t, pair(seed, Link{Loss: loss}, Link{}), WithTrace(tr.record))
				a, b := host(t, n, "a"), host(t, n, "b")
				ac, bc := listenUDP(t, a, ":0"), listenUDP(t, b, ":9")
				for range count {
					send(t, ac, udpAddr(b.Addr(), 9), "x")
				}
				got := len(recvAll(t, bc, time.Second))
				lost := count - got
				require.Equal(t, lost, tr.drops()[DropLoss])
				sd := 5 * 30.0 // five times sqrt(count * loss * (1-loss))
				require.InDelta(t, count*loss, float64(lost), sd)
			})
		})
	}
}

// TestBandwidth: packets queue behind each other at the link's rate, so a
// burst takes size/bandwidth to cross, plus the latency.
func TestBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			bandwidth = 1_000_000 // bit/s
			latency   = 10 * time.Millisecond
			count     = 100
			wire      = 1000 // bytes per packet on the wire: 8 ms each
		)
		n := start(t, pair(1, Link{Latency: latency, Bandwidth: bandwidth, QueueBytes: count * wire}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		ac, bc := listenUDP(t, a, ":0"), listenUDP(t, b, ":9")
		begin := time.Now()
		for range count {
			send(t, ac, udpAddr(b.Addr(), 9), string(make([]byte, wire-udpOverhead)))
		}
		all := recvAll(t, bc, time.Second)
		require.Len(t, all, count)
		perPacket := time.Duration(wire*8) * time.Second / bandwidth
		require.Equal(t, perPacket+latency, all[0].at.Sub(begin))
		require.Equal(t, count*perPacket+latency, all[count-1].at.Sub(begin), "size/bandwidth + latency")
	})
}

// TestQueueOverflow: a burst beyond QueueBytes is tail-dropped; once the
// queue drains, packets pass again.
func TestQueueOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			bandwidth = 1_000_000
			wire      = 1000
			queue     = 10 * wire
		)
		var tr tracer
		n := start(t, pair(1, Link{Bandwidth: bandwidth, QueueBytes: queue}, Link{}), WithTrace(tr.record))
		a, b := host(t, n, "a"), host(t, n, "b")
		ac, bc := listenUDP(t, a, ":0"), listenUDP(t, b, ":9")
		payload := string(make([]byte, wire-udpOverhead))
		for range 100 {
			send(t, ac, udpAddr(b.Addr(), 9), payload)
		}
		require.Len(t, recvAll(t, bc, time.Second), queue/wire)
		require.Equal(t, 100-queue/wire, tr.drops()[DropQueueFull])

		send(t, ac, udpAddr(b.Addr(), 9), payload)
		_, ok := recv(t, bc, time.Second)
		require.True(t, ok, "the drained queue takes packets again")
	})
}

// TestDirectionsIndependent: a saturated direction does not delay the other.
func TestDirectionsIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 10 * time.Millisecond
		n := start(t, pair(1, Link{Latency: latency, Bandwidth: 1_000_000}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		ac, bc := listenUDP(t, a, ":9"), listenUDP(t, b, ":9")
		for range 50 {
			send(t, ac, udpAddr(b.Addr(), 9), string(make([]byte, 1000)))
		}
		begin := time.Now()
		send(t, bc, udpAddr(a.Addr(), 9), "other way")
		r, ok := recv(t, ac, time.Second)
		require.True(t, ok)
		// Only serialization of 31 bytes at 1 Mbit/s adds to the latency.
		require.Equal(t, latency+transmitTime(len("other way")+udpOverhead, 1_000_000), r.at.Sub(begin))
	})
}

func TestMTU(t *testing.T) {
	tests := []struct {
		name    string
		mtu     int // 0: the default
		payload int
		pass    bool
	}{
		{name: "default MTU, full", payload: 1500 - udpOverhead, pass: true},
		{name: "default MTU, one byte over", payload: 1500 - udpOverhead + 1},
		{name: "1280, full", mtu: 1280, payload: 1280 - udpOverhead, pass: true},
		{name: "1280, one byte over", mtu: 1280, payload: 1280 - udpOverhead + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracer
				n := start(t, pair(1, Link{}, Link{MTU: tt.mtu}), WithTrace(tr.record))
				a, b := host(t, n, "a"), host(t, n, "b")
				ac, bc := listenUDP(t, a, ":0"), listenUDP(t, b, ":9")
				send(t, ac, udpAddr(b.Addr(), 9), string(make([]byte, tt.payload)))
				_, ok := recv(t, bc, time.Second)
				require.Equal(t, tt.pass, ok)
				if !tt.pass {
					require.Equal(t, map[DropReason]int{DropMTU: 1}, tr.drops())
				}
			})
		})
	}
}

// TestDeterminism: the same seed gives the same losses, jitter and NAT
// ports; another seed does not.
func TestDeterminism(t *testing.T) {
	type outcome struct {
		arrivals []string // payload and delay of each packet that arrived
		natPort  uint16
	}
	run := func(seed int64) outcome {
		var o outcome
		synctest.Test(t, func(t *testing.T) {
			topo := Topology{
				Seed:   seed,
				Public: []Host{{Name: "b"}},
				Sites: []Site{{
					Name:   "s",
					NAT:    Symmetric,
					Uplink: Link{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.3},
					Hosts:  []Host{{Name: "a"}},
				}},
			}
			n := start(t, topo)
			a, b := host(t, n, "a"), host(t, n, "b")
			ac, bc := listenUDP(t, a, ":5000"), listenUDP(t, b, ":9")
			begin := time.Now()
			for i := range 200 {
				send(t, ac, udpAddr(b.Addr(), 9), strconv.Itoa(i))
			}
			for _, r := range recvAll(t, bc, time.Second) {
				o.arrivals = append(o.arrivals, fmt.Sprintf("%s@%v", r.payload, r.at.Sub(begin)))
				o.natPort = r.from.Port()
			}
		})
		return o
	}
	first := run(42)
	require.NotEmpty(t, first.arrivals)
	require.Equal(t, first, run(42))
	require.NotEqual(t, first, run(43))
}
