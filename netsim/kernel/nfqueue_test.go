package kernel

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// packetMsg builds an NFQNL_MSG_PACKET message as the kernel sends it.
func packetMsg(t testing.TB, id, indev, outdev uint32) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	// struct nfqnl_msg_packet_hdr: id, hw_protocol, hook (padded).
	hdr := binary.BigEndian.AppendUint32(nil, id)
	ae.Bytes(nfqaPacketHdr, append(hdr, 0x08, 0x00, 2, 0))
	if indev != 0 {
		ae.Uint32(nfqaIfindexIndev, indev)
	}
	if outdev != 0 {
		ae.Uint32(nfqaIfindexOutdev, outdev)
	}
	attrs, err := ae.Encode()
	require.NoError(t, err)
	m := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(msgTypePacket)},
		Data:   append(nfgenHeader(queueNum), attrs...),
	}
	m.Header.Length = uint32(nlmsgHdrLen + len(m.Data))
	b, err := m.MarshalBinary()
	require.NoError(t, err)
	return b
}

func TestParsePacket(t *testing.T) {
	for _, tc := range []struct {
		name          string
		id, in, out   uint32
		wantIn, wantO uint32
	}{
		{"forwarded", 7, 3, 4, 3, 4},
		{"no outdev", 1 << 31, 2, 0, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, payload, rest, err := nextMessage(packetMsg(t, tc.id, tc.in, tc.out))
			require.NoError(t, err)
			require.Equal(t, msgTypePacket, typ)
			require.Empty(t, rest)
			p, err := parsePacket(payload)
			require.NoError(t, err)
			require.Equal(t, queuedPacket{id: tc.id, indev: tc.wantIn, outdev: tc.wantO}, p)
		})
	}
}

func TestParsePacketRejectsBadInput(t *testing.T) {
	good := packetMsg(t, 1, 2, 3)[nlmsgHdrLen:]
	noHdr := slices.Clone(good)
	binary.NativeEndian.PutUint16(noHdr[nfgenHdrLen+2:], 99) // retype NFQA_PACKET_HDR
	longAttr := slices.Clone(good)
	binary.NativeEndian.PutUint16(longAttr[nfgenHdrLen:], 200)
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"no packet header", noHdr},
		{"attribute longer than message", longAttr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePacket(tc.payload)
			require.Error(t, err)
		})
	}
}

func TestNextMessageSplitsABatch(t *testing.T) {
	b := append(packetMsg(t, 1, 2, 3), packetMsg(t, 4, 5, 6)...)
	var ids []uint32
	for len(b) > 0 {
		_, payload, rest, err := nextMessage(b)
		require.NoError(t, err)
		p, err := parsePacket(payload)
		require.NoError(t, err)
		ids = append(ids, p.id)
		b = rest
	}
	require.Equal(t, []uint32{1, 4}, ids)

	_, _, _, err := nextMessage(packetMsg(t, 1, 2, 3)[:20])
	require.ErrorIs(t, err, errShortMessage)
}

func TestAppendVerdict(t *testing.T) {
	b := appendVerdict(nil, 5, 0xdeadbeef, nfAccept)
	require.Len(t, b, verdictMsgLen)
	var m netlink.Message
	require.NoError(t, m.UnmarshalBinary(b))
	require.Equal(t, netlink.HeaderType(msgTypeVerdict), m.Header.Type)
	require.Equal(t, netlink.Request, m.Header.Flags)
	require.Equal(t, nfgenHeader(5), m.Data[:nfgenHdrLen])
	ad, err := netlink.NewAttributeDecoder(m.Data[nfgenHdrLen:])
	require.NoError(t, err)
	require.True(t, ad.Next())
	require.Equal(t, uint16(nfqaVerdictHdr), ad.Type())
	v := ad.Bytes()
	require.Equal(t, uint32(nfAccept), binary.BigEndian.Uint32(v))
	require.Equal(t, uint32(0xdeadbeef), binary.BigEndian.Uint32(v[4:]))
	require.False(t, ad.Next())
}

func TestParseError(t *testing.T) {
	var b [4]byte
	errnoField := -int32(unix.ENOENT) // NLMSG_ERROR carries a negative errno
	binary.NativeEndian.PutUint32(b[:], uint32(errnoField))
	errno, err := parseError(b[:])
	require.NoError(t, err)
	require.Equal(t, unix.ENOENT, errno)
}

// testDelayer is a delayer with no socket: enough for handle and release.
func testDelayer(shapes map[int]shape) *delayer { return makeDelayer("test", shapes, 1) }

type verdictOf struct{ id, verdict uint32 }

func verdicts(t *testing.T, b []byte) []verdictOf {
	t.Helper()
	var out []verdictOf
	for len(b) > 0 {
		typ, payload, rest, err := nextMessage(b)
		require.NoError(t, err)
		require.Equal(t, msgTypeVerdict, typ)
		v := payload[nfgenHdrLen+nlattrHdrLen:]
		out = append(out, verdictOf{id: binary.BigEndian.Uint32(v[4:]), verdict: binary.BigEndian.Uint32(v)})
		b = rest
	}
	return out
}

func TestDelayerSchedulesByBothLinks(t *testing.T) {
	const (
		uplink = 2 // ifindex of a 20 ms link
		lan    = 3 // a 5 ms link
		lossy  = 4 // drops everything
		plain  = 5 // no shape
	)
	d := testDelayer(map[int]shape{
		uplink: {latency: 20 * time.Millisecond},
		lan:    {latency: 5 * time.Millisecond},
		lossy:  {loss: 1},
	})
	var batch []byte
	batch = append(batch, packetMsg(t, 1, lan, uplink)...)   // 25 ms
	batch = append(batch, packetMsg(t, 2, uplink, plain)...) // 20 ms
	batch = append(batch, packetMsg(t, 3, plain, plain)...)  // now
	batch = append(batch, packetMsg(t, 4, lossy, uplink)...) // dropped
	batch = append(batch, packetMsg(t, 5, 99, plain)...)     // unknown interface: now
	require.NoError(t, d.handle(batch, 0))
	require.Equal(t, []verdictOf{{3, nfAccept}, {4, nfDrop}, {5, nfAccept}}, verdicts(t, d.out))

	for _, step := range []struct {
		at   time.Duration
		want []verdictOf
	}{
		{19 * time.Millisecond, nil},
		{20 * time.Millisecond, []verdictOf{{2, nfAccept}}},
		{24 * time.Millisecond, nil},
		{25 * time.Millisecond, []verdictOf{{1, nfAccept}}},
	} {
		d.out = d.out[:0]
		d.release(step.at)
		require.Equal(t, step.want, verdicts(t, d.out), "at %v", step.at)
	}
	require.Empty(t, d.held)
}

func TestDelayerJitterStaysInRange(t *testing.T) {
	const base, jitter = 10 * time.Millisecond, 4 * time.Millisecond
	d := testDelayer(map[int]shape{1: {latency: base, jitter: jitter}})
	for i := range 200 {
		require.NoError(t, d.handle(packetMsg(t, uint32(i), 1, 0), 0))
	}
	require.Empty(t, d.out)
	var dues []time.Duration
	for len(d.held) > 0 {
		dues = append(dues, d.held.pop().due)
	}
	require.True(t, slices.IsSorted(dues))
	require.GreaterOrEqual(t, dues[0], base)
	require.Less(t, dues[len(dues)-1], base+jitter)
	require.Greater(t, dues[len(dues)-1]-dues[0], jitter/2, "200 jittered packets should spread over the jitter range")
}

func TestHeldQueuePopsInDueOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var q heldQueue
	var want []time.Duration
	for i := range 1000 {
		due := time.Duration(rng.Int64N(1000))
		q.push(held{due: due, id: uint32(i)})
		want = append(want, due)
	}
	slices.Sort(want)
	var got []time.Duration
	for len(q) > 0 {
		got = append(got, q.pop().due)
	}
	require.Equal(t, want, got)
}

// The per-packet path (parse, schedule, release, encode the verdict) must
// not allocate: it runs for every forwarded packet of the lab.
func TestDelayerPacketPathDoesNotAllocate(t *testing.T) {
	d := testDelayer(map[int]shape{1: {latency: time.Millisecond, jitter: time.Millisecond}, 2: {loss: 0.5}})
	var batch []byte
	for i := range 16 {
		batch = append(batch, packetMsg(t, uint32(i), 1, 2)...)
	}
	now := time.Duration(0)
	allocs := testing.AllocsPerRun(100, func() {
		d.out = d.out[:0]
		if err := d.handle(batch, now); err != nil {
			t.Fatal(err)
		}
		now += 10 * time.Millisecond
		d.release(now)
	})
	require.Zero(t, allocs)
}
