package mesh

import (
	"errors"
	"fmt"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"

	"github.com/quic-go/quic-go"
)

// Errors a session ends with or a dial fails with; check with errors.Is.
var (
	// ErrSessionExpired: the session's newest token expired, because its
	// lease ended or it could not be renewed.
	ErrSessionExpired = errors.New("session expired")
	// ErrSessionClosed: this side closed the session.
	ErrSessionClosed = errors.New("session closed")
	// ErrSessionEnded: the other side ended the session.
	ErrSessionEnded = errors.New("session ended by the other side")
	// ErrRefused: the relay refused to join the session; the error says
	// why (a *RefusedError).
	ErrRefused = errors.New("the relay refused the session")
	// ErrExporterKey: the exporter's key is not the one the coordinator
	// pinned: someone else answered.
	ErrExporterKey = errors.New("the exporter's key is not the pinned one")
	// ErrNoDirectPath: a direct path was required and none opened.
	ErrNoDirectPath = errors.New("no direct path to the peer")
	// ErrPeerRestarted: the exporter restarted; streams open at the time
	// are lost, later ones go to the new process.
	ErrPeerRestarted = errors.New("the exporter restarted")
	// ErrPeerLost: nothing came from the peer for the idle timeout.
	ErrPeerLost = errors.New("lost the peer")
)

// Application error codes that close end-to-end connections.
const (
	codeClosed         quic.ApplicationErrorCode = 0x0
	codeSessionExpired quic.ApplicationErrorCode = 0x1
	codeSessionEnded   quic.ApplicationErrorCode = 0x2
	codeLostRace       quic.ApplicationErrorCode = 0x3
	codePeerRestarted  quic.ApplicationErrorCode = 0x4
)

// RefusedError is the relay's refusal of a join.
type RefusedError struct {
	Reason  relayv1.Reason
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the relay refused the session: %s", e.Message)
}

// Is makes errors.Is(err, ErrRefused) true, and ErrSessionExpired for an
// expired token.
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || (target == ErrSessionExpired && e.Reason == relayv1.Reason_REASON_TOKEN_EXPIRED)
}

// SessionError is why a session ended, as the side that ended it said.
type SessionError struct {
	Err     error // one of the sentinels above
	Message string
}

func (e *SessionError) Error() string {
	if e.Message == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Message
}

func (e *SessionError) Unwrap() error { return e.Err }

// closeError turns the error a QUIC connection ended with into the
// session's reason.
func closeError(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		switch ae.ErrorCode {
		case codeSessionExpired:
			return &SessionError{Err: ErrSessionExpired, Message: ae.ErrorMessage}
		case codeSessionEnded:
			return &SessionError{Err: ErrSessionEnded, Message: ae.ErrorMessage}
		case codePeerRestarted:
			return &SessionError{Err: ErrPeerRestarted, Message: "streams open at the time were lost"}
		case codeClosed:
			if ae.Remote {
				return &SessionError{Err: ErrSessionEnded, Message: ae.ErrorMessage}
			}
			return ErrSessionClosed
		}
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return &SessionError{Err: ErrPeerLost, Message: "no packet came for the idle timeout; is the network down?"}
	}
	var reset *quic.StatelessResetError
	if errors.As(err, &reset) {
		return &SessionError{Err: ErrPeerRestarted, Message: "it forgot the connection"}
	}
	return err
}
