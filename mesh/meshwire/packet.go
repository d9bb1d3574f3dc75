package meshwire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	meshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/mesh/v1"
	"io"

	"google.golang.org/protobuf/proto"
)

// Punch packet types, after relaywire's.
const (
	// TypePing is [TypePing][tag, 8][nonce, 8]: opens the sender's NAT
	// towards the receiver and asks for a TypePong.
	TypePing byte = 0x04
	// TypePong is [TypePong][tag, 8][nonce, 8], sent back to where the
	// ping came from: the path works both ways.
	TypePong byte = 0x05
)

// PunchSize is the length of a ping or a pong.
const PunchSize = 1 + 8 + 8

// Tag names a session in punch packets, so that a peer tells its
// sessions' packets apart and ignores strangers'.
type Tag [8]byte

// Nonce matches a pong to its ping.
type Nonce [8]byte

// ErrShort is returned for a packet too short for its type.
var ErrShort = errors.New("punch packet too short")

// AppendPunch appends a ping or a pong.
func AppendPunch(b []byte, typ byte, tag Tag, nonce Nonce) []byte {
	b = append(b, typ)
	b = append(b, tag[:]...)
	return append(b, nonce[:]...)
}

// ParsePunch returns a ping's or pong's tag and nonce.
func ParsePunch(b []byte) (Tag, Nonce, error) {
	if len(b) < PunchSize || (b[0] != TypePing && b[0] != TypePong) {
		return Tag{}, Nonce{}, ErrShort
	}
	return Tag(b[1:9]), Nonce(b[9:17]), nil
}

// maxControlSize bounds a control message: a token is a few hundred bytes.
const maxControlSize = 64 << 10

// WriteControl writes m, length-prefixed.
func WriteControl(w io.Writer, m *meshv1.Control) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal control message: %w", err)
	}
	_, err = w.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...))
	return err
}

// ReadControl reads a message that WriteControl wrote.
func ReadControl(r *bufio.Reader) (*meshv1.Control, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxControlSize {
		return nil, fmt.Errorf("control message of %d bytes: over the limit of %d", n, maxControlSize)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	var m meshv1.Control
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("malformed control message: %w", err)
	}
	return &m, nil
}
