package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The part of the nfnetlink_queue protocol (linux/netfilter/nfnetlink_queue.h)
// the delay program speaks. Attribute payloads are big-endian; netlink and
// attribute headers are in host order (little-endian on every platform the lab
// runs on, checked by the unit tests).
const (
	nfnlSubsysQueue = 3 // NFNL_SUBSYS_QUEUE

	nfqnlMsgPacket  = 0 // NFQNL_MSG_PACKET: kernel -> us, one queued packet
	nfqnlMsgVerdict = 1 // NFQNL_MSG_VERDICT: us -> kernel
	nfqnlMsgConfig  = 2 // NFQNL_MSG_CONFIG

	nfqaPacketHdr     = 1 // NFQA_PACKET_HDR: struct nfqnl_msg_packet_hdr
	nfqaVerdictHdr    = 2 // NFQA_VERDICT_HDR: struct nfqnl_msg_verdict_hdr
	nfqaIfindexIndev  = 5 // NFQA_IFINDEX_INDEV
	nfqaIfindexOutdev = 6 // NFQA_IFINDEX_OUTDEV

	nfqaCfgCmd         = 1 // NFQA_CFG_CMD: struct nfqnl_msg_config_cmd
	nfqaCfgParams      = 2 // NFQA_CFG_PARAMS: struct nfqnl_msg_config_params
	nfqaCfgQueueMaxlen = 3 // NFQA_CFG_QUEUE_MAXLEN
	nfqaCfgMask        = 4 // NFQA_CFG_MASK
	nfqaCfgFlags       = 5 // NFQA_CFG_FLAGS

	nfqnlCfgCmdBind = 1 // NFQNL_CFG_CMD_BIND
	nfqnlCopyMeta   = 1 // NFQNL_COPY_META: metadata only, no payload
	nfqaCfgFGSO     = 4 // NFQA_CFG_F_GSO: queue GSO packets whole

	nfDrop   = 0 // NF_DROP
	nfAccept = 1 // NF_ACCEPT

	nlmsgHdrLen   = 16 // sizeof(struct nlmsghdr)
	nfgenHdrLen   = 4  // sizeof(struct nfgenmsg)
	nlattrHdrLen  = 4  // sizeof(struct nlattr)
	nlaTypeMask   = 0x3fff
	verdictMsgLen = nlmsgHdrLen + nfgenHdrLen + nlattrHdrLen + 8
)

var (
	msgTypePacket  = uint16(nfnlSubsysQueue<<8 | nfqnlMsgPacket)
	msgTypeVerdict = uint16(nfnlSubsysQueue<<8 | nfqnlMsgVerdict)
	msgTypeConfig  = uint16(nfnlSubsysQueue<<8 | nfqnlMsgConfig)
)

// queuedPacket is what the delay program needs from one queued packet: its id
// for the verdict and the interfaces it came in and goes out on, which name the
// links it crosses.
type queuedPacket struct {
	id            uint32
	indev, outdev uint32
}

var errShortMessage = errors.New("nfqueue: truncated netlink message")

// bindQueue binds conn to queue num in metadata-only mode: the delay program
// never reads or rewrites a payload, so copying none keeps each message about
// 100 bytes and lets the socket buffer hold the whole queue (see maxQueued).
func bindQueue(conn *netlink.Conn, num uint16, maxlen uint32) error {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	// struct nfqnl_msg_config_cmd: command, pad, protocol family (ignored
	// since Linux 3.8, set for older kernels' sake).
	ae.Bytes(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET})
	// struct nfqnl_msg_config_params: copy range then mode, packed.
	ae.Bytes(nfqaCfgParams, []byte{0, 0, 0, 0, nfqnlCopyMeta})
	ae.Uint32(nfqaCfgQueueMaxlen, maxlen)
	ae.Uint32(nfqaCfgMask, nfqaCfgFGSO)
	ae.Uint32(nfqaCfgFlags, nfqaCfgFGSO)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("encode nfqueue config: %w", err)
	}
	data := append(nfgenHeader(num), attrs...)
	_, err = conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(msgTypeConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: data,
	})
	if err != nil {
		return fmt.Errorf("bind nfqueue %d: %w", num, err)
	}
	return nil
}

// nfgenHeader is struct nfgenmsg addressed to queue num.
func nfgenHeader(num uint16) []byte {
	return []byte{unix.AF_UNSPEC, 0 /* NFNETLINK_V0 */, byte(num >> 8), byte(num)}
}

// appendVerdict appends one NFQNL_MSG_VERDICT message to b; several of them
// go to the kernel in one write.
func appendVerdict(b []byte, num uint16, id, verdict uint32) []byte {
	var m [verdictMsgLen]byte
	binary.NativeEndian.PutUint32(m[0:], verdictMsgLen)
	binary.NativeEndian.PutUint16(m[4:], msgTypeVerdict)
	binary.NativeEndian.PutUint16(m[6:], uint16(netlink.Request))
	// Sequence and port id stay zero: no reply is asked for.
	m[16], m[17], m[18], m[19] = unix.AF_UNSPEC, 0, byte(num>>8), byte(num)
	binary.NativeEndian.PutUint16(m[20:], nlattrHdrLen+8)
	binary.NativeEndian.PutUint16(m[22:], nfqaVerdictHdr)
	binary.BigEndian.PutUint32(m[24:], verdict)
	binary.BigEndian.PutUint32(m[28:], id)
	return append(b, m[:]...)
}

// nextMessage splits the first netlink message off b. It returns the
// message's type and its payload (after the netlink header).
func nextMessage(b []byte) (typ uint16, payload, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return 0, nil, nil, errShortMessage
	}
	n := int(binary.NativeEndian.Uint32(b))
	if n < nlmsgHdrLen || n > len(b) {
		return 0, nil, nil, errShortMessage
	}
	typ = binary.NativeEndian.Uint16(b[4:])
	payload = b[nlmsgHdrLen:n]
	if aligned := nlmsgAlign(n); aligned < len(b) {
		rest = b[aligned:]
	}
	return typ, payload, rest, nil
}

// parsePacket reads an NFQNL_MSG_PACKET payload without allocating.
func parsePacket(payload []byte) (queuedPacket, error) {
	var p queuedPacket
	if len(payload) < nfgenHdrLen {
		return p, errShortMessage
	}
	haveID := false
	for b := payload[nfgenHdrLen:]; len(b) >= nlattrHdrLen; {
		n := int(binary.NativeEndian.Uint16(b))
		if n < nlattrHdrLen || n > len(b) {
			return p, errShortMessage
		}
		v := b[nlattrHdrLen:n]
		switch binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask {
		case nfqaPacketHdr:
			if len(v) < 4 {
				return p, errShortMessage
			}
			p.id, haveID = binary.BigEndian.Uint32(v), true
		case nfqaIfindexIndev:
			if len(v) < 4 {
				return p, errShortMessage
			}
			p.indev = binary.BigEndian.Uint32(v)
		case nfqaIfindexOutdev:
			if len(v) < 4 {
				return p, errShortMessage
			}
			p.outdev = binary.BigEndian.Uint32(v)
		}
		if aligned := nlaAlign(n); aligned < len(b) {
			b = b[aligned:]
		} else {
			break
		}
	}
	if !haveID {
		return p, errors.New("nfqueue: packet message without NFQA_PACKET_HDR")
	}
	return p, nil
}

// parseError reads the errno of an NLMSG_ERROR payload; 0 is an
// acknowledgement.
func parseError(payload []byte) (unix.Errno, error) {
	if len(payload) < 4 {
		return 0, errShortMessage
	}
	return unix.Errno(-int32(binary.NativeEndian.Uint32(payload))), nil
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }
