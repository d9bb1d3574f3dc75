package relay_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/stretchr/testify/require"
)

const (
	client   = relayv1.Role_ROLE_CLIENT
	exporter = relayv1.Role_ROLE_EXPORTER
)

// TestJoinRefused: the relay admits a peer to a session only with a valid,
// unexpired session token for the exporter it names, and a client only
// with the key the token is bound to.
func TestJoinRefused(t *testing.T) {
	tests := []struct {
		name     string
		token    func(w *world, p *peer) string
		exporter string
		role     relayv1.Role
		want     relayv1.Reason
	}{
		{name: "no token", token: func(*world, *peer) string { return "" },
			exporter: exporterID, role: client, want: relayv1.Reason_REASON_TOKEN_INVALID},
		{name: "not a token", token: func(*world, *peer) string { return "a.b.c" },
			exporter: exporterID, role: client, want: relayv1.Reason_REASON_TOKEN_INVALID},
		{name: "another session's token", token: func(w *world, p *peer) string {
			return w.token("lease-2", "board-02", p.pub(), time.Hour)
		}, exporter: exporterID, role: client, want: relayv1.Reason_REASON_TOKEN_INVALID},
		{name: "expired token", token: func(w *world, p *peer) string {
			return w.token("lease-1", exporterID, p.pub(), -time.Minute)
		}, exporter: exporterID, role: client, want: relayv1.Reason_REASON_TOKEN_EXPIRED},
		{name: "token without the link's key", token: func(w *world, _ *peer) string {
			other, _, _ := ed25519.GenerateKey(rand.Reader)
			return w.token("lease-1", exporterID, other, time.Hour)
		}, exporter: exporterID, role: client, want: relayv1.Reason_REASON_KEY_MISMATCH},
		{name: "no role", token: func(w *world, p *peer) string {
			return w.token("lease-1", exporterID, p.pub(), time.Hour)
		}, exporter: exporterID, role: relayv1.Role_ROLE_UNSPECIFIED, want: relayv1.Reason_REASON_BAD_REQUEST},
		{name: "no exporter", token: func(w *world, p *peer) string {
			return w.token("lease-1", exporterID, p.pub(), time.Hour)
		}, exporter: "", role: client, want: relayv1.Reason_REASON_BAD_REQUEST},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, relay.Limits{})
				p := w.newPeer("udp")
				m := p.join(1, tt.token(w, p), tt.exporter, tt.role)
				require.Equal(t, tt.want, m.GetRefused().GetReason(), "%v", m)
				require.NotEmpty(t, m.GetRefused().GetMessage())
				require.Equal(t, 1.0, value(t, w, "jumpmesh_relay_joins_total", tt.want.String()))
			})
		})
	}
}

// TestPairing: the relay pairs two peers only when both present tokens of
// the same session; each learns how the other may be reached.
func TestPairing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		c, e, stranger := w.newPeer("udp"), w.newPeer("udp"), w.newPeer("udp")
		tok := w.token("lease-1", exporterID, c.pub(), time.Hour)

		joined := e.join(7, tok, exporterID, exporter).GetJoined()
		require.NotNil(t, joined)
		require.Equal(t, uint32(7), joined.GetRef())
		require.NotZero(t, joined.GetChannel())
		seen, ok := relaywire.AddrPortOf(joined.GetObserved())
		require.True(t, ok)
		require.Equal(t, e.pc.LocalAddr().(*net.UDPAddr).Port, int(seen.Port()))

		// Another session's client, with its own valid token, meets no one.
		other := w.token("lease-2", exporterID, stranger.pub(), time.Hour)
		require.NotNil(t, stranger.join(1, other, exporterID, client).GetJoined())

		require.NotNil(t, c.join(3, tok, exporterID, client).GetJoined())
		cp, ep := c.next().GetPaired(), e.next().GetPaired()
		require.NotNil(t, cp)
		require.NotNil(t, ep)
		require.Equal(t, uint64(107), cp.GetPeerInstance(), "the exporter's instance")
		require.Equal(t, uint64(103), ep.GetPeerInstance(), "the client's instance")
		eAddr, _ := relaywire.AddrPortOf(cp.GetPeerObserved())
		require.Equal(t, seen, eAddr)
		synctest.Wait()
		stranger.quiet()
		require.Equal(t, 2.0, value(t, w, "jumpmesh_relay_sessions"))
		require.Equal(t, 1.0, value(t, w, "jumpmesh_relay_paired_sessions"))
		require.Equal(t, 3.0, value(t, w, "jumpmesh_relay_links", "udp"))
	})
}

// pair joins a client and an exporter to one session and returns their
// channels.
func pair(t *testing.T, w *world, c, e *peer) (cch, ech uint64) {
	tok := w.token("lease-1", exporterID, c.pub(), time.Hour)
	ech = e.join(1, tok, exporterID, exporter).GetJoined().GetChannel()
	cch = c.join(1, tok, exporterID, client).GetJoined().GetChannel()
	require.NotNil(t, c.next().GetPaired())
	require.NotNil(t, e.next().GetPaired())
	return cch, ech
}

// TestForwarding: relayed packets reach the other side with its channel,
// between any mix of UDP and TCP links, and a packet on an unknown channel
// is answered so that its sender joins again.
func TestForwarding(t *testing.T) {
	for _, links := range [][2]string{{"udp", "udp"}, {"tcp", "udp"}, {"udp", "tcp"}, {"tcp", "tcp"}} {
		t.Run(links[0]+"-"+links[1], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, relay.Limits{})
				c, e := w.newPeer(links[0]), w.newPeer(links[1])
				cch, ech := pair(t, w, c, e)
				c.sendData(cch, []byte("to the exporter"))
				got := <-e.data
				ch, err := relaywire.DataChannel(got)
				require.NoError(t, err)
				require.Equal(t, ech, ch)
				require.Equal(t, "to the exporter", string(got[relaywire.DataHeaderSize:]))
				e.sendData(ech, []byte("to the client"))
				got = <-c.data
				require.Equal(t, "to the client", string(got[relaywire.DataHeaderSize:]))
			})
		})
	}
	t.Run("unknown channel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(t, relay.Limits{})
			p := w.newPeer("udp")
			p.sendData(12345, []byte("anyone?"))
			ch, err := relaywire.ParseUnknownChannel(<-p.data)
			require.NoError(t, err)
			require.Equal(t, uint64(12345), ch)
		})
	})
}

// TestProbes: both UDP ports answer with the address they see.
func TestProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		h, err := w.n.Host("peer0")
		require.NoError(t, err)
		pc, err := h.ListenPacket("udp", ":4000")
		require.NoError(t, err)
		defer pc.Close()
		for _, port := range []int{relayPort, probePort} {
			var nonce [relaywire.NonceSize]byte
			nonce[0] = byte(port)
			_, err := pc.WriteTo(relaywire.AppendProbe(nil, nonce), &net.UDPAddr{IP: w.relayUDP.Addr().AsSlice(), Port: port})
			require.NoError(t, err)
			buf := make([]byte, 100)
			n, _, err := pc.ReadFrom(buf)
			require.NoError(t, err)
			require.LessOrEqual(t, n, relaywire.ProbeSize, "no amplification")
			got, seen, err := relaywire.ParseProbeReply(buf[:n])
			require.NoError(t, err)
			require.Equal(t, nonce, got)
			require.Equal(t, uint16(4000), seen.Port())
			require.Equal(t, h.Addr(), seen.Addr())
		}
	})
}

// TestLimits: a peer gets at most MaxSessionsPerPeer sessions, and a
// session at most its bandwidth; what goes over is dropped and counted.
func TestLimits(t *testing.T) {
	t.Run("sessions per peer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(t, relay.Limits{MaxSessionsPerPeer: 1})
			c := w.newPeer("udp")
			require.NotNil(t, c.join(1, w.token("lease-1", exporterID, c.pub(), time.Hour), exporterID, client).GetJoined())
			m := c.join(2, w.token("lease-2", exporterID, c.pub(), time.Hour), exporterID, client)
			require.Equal(t, relayv1.Reason_REASON_LIMIT, m.GetRefused().GetReason())
		})
	})
	t.Run("session bandwidth", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const (
				rate    = 100_000 // bytes per second
				burst   = 256 << 10
				sending = 5 * time.Second
			)
			w := newWorld(t, relay.Limits{SessionBandwidth: rate})
			c, e := w.newPeer("udp"), w.newPeer("udp")
			cch, _ := pair(t, w, c, e)
			payload := bytes.Repeat([]byte{'x'}, 1200)
			size := len(payload) + relaywire.DataHeaderSize
			// Offer 1.2 MB/s, twelve times the limit, for five seconds.
			sent := 0
			for begin := time.Now(); time.Since(begin) < sending; sent++ {
				c.sendData(cch, payload)
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Second)
			got := len(e.data)
			require.InDelta(t, burst+rate*sending.Seconds(), got*size, float64(2*size), "bytes through")
			require.Equal(t, float64(sent-got), value(t, w, "jumpmesh_relay_dropped_packets_total", "rate_limit"))
		})
	})
}

// TestSessionLifetime: a session ends when its newest token expires; a
// refresh with a later token of the same session extends it, one of
// another session is refused.
func TestSessionLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		c, e := w.newPeer("udp"), w.newPeer("udp")
		tok := w.token("lease-1", exporterID, c.pub(), time.Minute)
		require.NotNil(t, e.join(1, tok, exporterID, exporter).GetJoined())
		require.NotNil(t, c.join(1, tok, exporterID, client).GetJoined())
		c.next()
		e.next()

		c.send(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Refresh{Refresh: &relayv1.Refresh{
			Ref: 1, Token: w.token("lease-2", exporterID, c.pub(), time.Hour)}}})
		refused := c.next().GetRefused()
		require.Equal(t, relayv1.Reason_REASON_SESSION_MISMATCH, refused.GetReason())
		require.True(t, refused.GetRefresh())

		begin := time.Now()
		time.Sleep(30 * time.Second)
		c.send(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Refresh{Refresh: &relayv1.Refresh{
			Ref: 1, Token: w.token("lease-1", exporterID, c.pub(), time.Minute)}}})
		ended := c.next().GetEnded()
		require.NotNil(t, ended)
		require.Contains(t, ended.GetMessage(), "lease-1")
		require.NotNil(t, e.next().GetEnded())
		require.Equal(t, 90*time.Second, time.Since(begin).Round(time.Second), "the refreshed token's expiry")
		require.Equal(t, 0.0, value(t, w, "jumpmesh_relay_sessions"))
	})
}

// TestReplace: a newer join of the same side takes the older one's place
// (an exporter that restarted); the other side is paired again and sees a
// new instance.
func TestReplace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		c, e1, e2 := w.newPeer("udp"), w.newPeer("udp"), w.newPeer("udp")
		tok := w.token("lease-1", exporterID, c.pub(), time.Hour)
		require.NotNil(t, e1.join(1, tok, exporterID, exporter).GetJoined())
		require.NotNil(t, c.join(1, tok, exporterID, client).GetJoined())
		c.next()
		e1.next()
		require.NotNil(t, e2.join(5, tok, exporterID, exporter).GetJoined())
		require.Equal(t, relayv1.Reason_REASON_REPLACED, e1.next().GetRefused().GetReason())
		require.Equal(t, uint64(105), c.next().GetPaired().GetPeerInstance())
		require.NotNil(t, e2.next().GetPaired())
	})
}

// TestReplaceAlone: an exporter that restarts before its client comes
// back takes the place of its old join, which was alone in the session; the
// client that joins then is paired with it.
func TestReplaceAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		c, e1, e2 := w.newPeer("udp"), w.newPeer("udp"), w.newPeer("udp")
		tok := w.token("lease-1", exporterID, c.pub(), time.Hour)
		require.NotNil(t, e1.join(1, tok, exporterID, exporter).GetJoined())
		require.NotNil(t, e2.join(5, tok, exporterID, exporter).GetJoined())
		require.Equal(t, relayv1.Reason_REASON_REPLACED, e1.next().GetRefused().GetReason())
		require.NotNil(t, c.join(1, tok, exporterID, client).GetJoined())
		require.Equal(t, uint64(105), c.next().GetPaired().GetPeerInstance())
		require.Equal(t, 1.0, value(t, w, "jumpmesh_relay_sessions"))
	})
}

// TestPeerLeaves: when a side's link closes, the other hears of it.
func TestPeerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		c, e := w.newPeer("tcp"), w.newPeer("udp")
		pair(t, w, c, e)
		c.ctrl.Close()
		left := e.next().GetPeerLeft()
		require.NotNil(t, left)
		require.Contains(t, left.GetReason(), "client")
	})
}

// TestPunchTiming: the relay sends both sides their Paired so that they
// get it at the same moment, whatever their distance to the relay.
func TestPunchTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, relay.Limits{})
		near, far := w.newPeer("udp"), w.newPeerOn("far", "udp")
		tok := w.token("lease-1", exporterID, near.pub(), time.Hour)
		require.NotNil(t, far.join(1, tok, exporterID, exporter).GetJoined())
		require.NotNil(t, near.join(1, tok, exporterID, client).GetJoined())
		got := make(chan time.Time, 2)
		go func() { <-near.msgs; got <- time.Now() }()
		go func() { <-far.msgs; got <- time.Now() }()
		a, b := <-got, <-got
		require.Equal(t, a, b)
	})
}

// value reads a metric of the relay's registry: the one with the label
// values given, if any.
func value(t *testing.T, w *world, name string, labelValues ...string) float64 {
	t.Helper()
	families, err := w.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i, v := range labelValues {
				if i >= len(m.GetLabel()) || m.GetLabel()[i].GetValue() != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
