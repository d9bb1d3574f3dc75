package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/exporter"
	"github.com/jumpmesh/jumpmesh/mesh"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"google.golang.org/protobuf/proto"
)

// Exporter side of the mesh.
const (
	// pendingTokens bounds the session tokens waiting to be joined. An
	// exporter serves one lease, whose client dials a few times at most;
	// a token dropped comes again with the session's renewal.
	pendingTokens = 64
	// pathPoll is how often a session's path is looked at for the log: the
	// client moves the connection, and the exporter sees a move only when
	// it looks.
	pathPoll = 2 * time.Second
)

// meshExporter serves the exporter's driver tree to the clients of its
// lease over the mesh: it joins each session the coordinator gives it a
// token for, serves the session's streams, and ends the sessions of a
// lease that ended or changed hands.
type meshExporter struct {
	e     *exporter.Exporter
	agent *coordclient.Agent
	name  string
	key   ed25519.PrivateKey
	keys  mesh.TokenVerifier
	log   *slog.Logger
	// port is the mesh socket's UDP port, 0 for any; public are the
	// addresses clients reach it at from anywhere (--public-addr).
	port   uint16
	public []netip.AddrPort

	tokens chan string
}

func newMeshExporter(e *exporter.Exporter, key ed25519.PrivateKey, keys mesh.TokenVerifier, log *slog.Logger) *meshExporter {
	return &meshExporter{e: e, name: e.Name(), key: key, keys: keys, log: log, tokens: make(chan string, pendingTokens)}
}

// offer queues a session token to join; it never blocks (Agent.OnSession).
func (m *meshExporter) offer(tok string) {
	select {
	case m.tokens <- tok:
	default:
		m.log.Warn("too many sessions waiting to be joined; dropped one (its client retries when it renews)")
	}
}

// servedSession is a session being served: whose it is.
type servedSession struct{ lease, client string }

// joined is the outcome of joining a session.
type joined struct {
	conn   *mesh.Conn
	claims *token.Claims
	err    error
}

// run joins and serves sessions until ctx ends, then ends them all.
func (m *meshExporter) run(ctx context.Context) {
	assignments, stop := m.agent.Watch()
	defer stop()
	var (
		ln       *mesh.Listener
		lnRelay  *coordinatorv1.RelayEndpoint
		sessions = map[*mesh.Conn]servedSession{}
		results  = make(chan joined)
		ended    = make(chan *mesh.Conn)
		wg       sync.WaitGroup
	)
	defer func() {
		if ln != nil {
			ln.Close()
		}
		wg.Wait()
	}()
	// listener is the listener on the relay the coordinator names now.
	listener := func() (*mesh.Listener, error) {
		relay := m.agent.Relay()
		if ln != nil && proto.Equal(relay, lnRelay) {
			return ln, nil
		}
		cfg, err := coordclient.RelayConfig(relay)
		if err != nil {
			return nil, err
		}
		if ln != nil {
			m.log.Info("the coordinator names another relay; its sessions start again there", "udp", relay.GetUdp(), "tcp", relay.GetTcp())
			ln.Close()
			ln = nil
		}
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(int(m.port)))
		if err != nil {
			return nil, fmt.Errorf("open the mesh socket: %w (pick another --mesh-port)", err)
		}
		next, err := mesh.Listen(mesh.ListenConfig{Key: m.key, Name: m.name, Tokens: m.keys, Relay: cfg,
			Network: mesh.Network{PacketConn: pc, PublicAddrs: m.public}, Logger: m.log.With("part", "mesh")})
		if err != nil {
			pc.Close()
			return nil, err
		}
		ln, lnRelay = next, relay
		return ln, nil
	}
	for {
		select {
		case tok := <-m.tokens:
			claims, err := sessionClaims(tok)
			if err != nil {
				m.log.Warn("the coordinator sent an unreadable session token", "err", err)
				continue
			}
			l, err := listener()
			if err != nil {
				m.log.Error("cannot join the session", "lease", claims.Lease, "client", claims.Client, "err", err)
				continue
			}
			wg.Go(func() {
				conn, err := l.Join(ctx, tok)
				select {
				case results <- joined{conn, claims, err}:
				case <-ctx.Done():
				}
			})
		case j := <-results:
			if j.err != nil {
				m.log.Warn("cannot join the session", "lease", j.claims.Lease, "client", j.claims.Client, "err", j.err)
				continue
			}
			if _, served := sessions[j.conn]; served {
				continue // a renewal of a session served already
			}
			s := servedSession{lease: j.claims.Lease, client: j.claims.Client}
			if cur := m.agent.Current(); cur.Lease != s.lease || cur.Client != s.client {
				m.log.Info("not serving a session of a lease no longer served", "lease", s.lease, "client", s.client)
				wg.Go(func() { j.conn.Close() })
				continue
			}
			sessions[j.conn] = s
			wg.Go(func() {
				m.serve(ctx, j.conn, s)
				select {
				case ended <- j.conn:
				case <-ctx.Done():
				}
			})
		case conn := <-ended:
			delete(sessions, conn)
		case asg := <-assignments:
			for conn, s := range sessions {
				if s.lease != asg.Lease || s.client != asg.Client {
					m.log.Info("ending the session: its lease is over here", "lease", s.lease, "client", s.client)
					wg.Go(func() { conn.Close() })
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// serve serves one session's streams until it ends, logging its path as
// it changes.
func (m *meshExporter) serve(ctx context.Context, conn *mesh.Conn, s servedSession) {
	log := m.log.With("lease", s.lease, "client", s.client)
	log.Info("session joined")
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { logPath(sctx, conn, log) })
	err := m.e.Serve(sctx, conn)
	cancel()
	wg.Wait()
	conn.Close()
	if serr := conn.Err(); serr != nil {
		err = serr
	}
	log.Info("session ended", "reason", err)
}

// logPath logs the session's path and round-trip time when the path
// changes, until ctx ends or the session does.
func logPath(ctx context.Context, conn *mesh.Conn, log *slog.Logger) {
	t := time.NewTicker(pathPoll)
	defer t.Stop()
	last := mesh.PathNone
	for {
		path, changed := conn.Watch()
		if path != last {
			log.Info("session path", "path", path.String(), "rtt", conn.RTT().Round(10*time.Microsecond))
			last = path
		}
		select {
		case <-changed:
		case <-t.C:
		case <-conn.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// sessionClaims reads a session token's claims without checking it: the
// mesh checks it on joining; these only say whose session it is.
func sessionClaims(tok string) (*token.Claims, error) {
	var c token.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
