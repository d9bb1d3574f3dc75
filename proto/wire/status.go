package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"google.golang.org/protobuf/proto"
)

// Code classifies an error that crosses the session protocol.
type Code = jumpmeshv1.Code

// The codes drivers and the exporter use most.
const (
	OK                 = jumpmeshv1.Code_CODE_OK
	Canceled           = jumpmeshv1.Code_CODE_CANCELED
	Unknown            = jumpmeshv1.Code_CODE_UNKNOWN
	InvalidArgument    = jumpmeshv1.Code_CODE_INVALID_ARGUMENT
	DeadlineExceeded   = jumpmeshv1.Code_CODE_DEADLINE_EXCEEDED
	NotFound           = jumpmeshv1.Code_CODE_NOT_FOUND
	FailedPrecondition = jumpmeshv1.Code_CODE_FAILED_PRECONDITION
	Unimplemented      = jumpmeshv1.Code_CODE_UNIMPLEMENTED
	Internal           = jumpmeshv1.Code_CODE_INTERNAL
	Unavailable        = jumpmeshv1.Code_CODE_UNAVAILABLE
	DataLoss           = jumpmeshv1.Code_CODE_DATA_LOSS
	PermissionDenied   = jumpmeshv1.Code_CODE_PERMISSION_DENIED
)

// Error is an error with a code, as drivers return it and clients receive
// it. errors.Is(err, &Error{Code: c}) matches any Error with code c, so
// callers can check the class without the message.
type Error struct {
	Code    Code
	Message string
}

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Message }

// Is matches an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CodeOf classifies err: the code of an *Error in its chain, and the
// natural code of context and I/O errors.
func CodeOf(err error) Code {
	var e *Error
	switch {
	case err == nil:
		return OK
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, os.ErrNotExist):
		return NotFound
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Unavailable
	}
	return Unknown
}

// StatusOf encodes err for a CLOSE frame; nil is CODE_OK. The message is
// made valid UTF-8, which protobuf strings must be: an error quoting a
// device's raw bytes still crosses.
func StatusOf(err error) *jumpmeshv1.Status {
	if err == nil {
		return &jumpmeshv1.Status{Code: OK}
	}
	return &jumpmeshv1.Status{Code: CodeOf(err), Message: strings.ToValidUTF8(err.Error(), "\uFFFD")}
}

// ErrorOf decodes a CLOSE frame's payload: nil for CODE_OK, an *Error
// otherwise.
func ErrorOf(payload []byte) error {
	if len(payload) == 0 {
		return nil // the zero Status, CODE_OK: the end of almost every stream
	}
	var s jumpmeshv1.Status
	if err := proto.Unmarshal(payload, &s); err != nil {
		return fmt.Errorf("%w: CLOSE frame: %v", ErrMalformed, err)
	}
	if s.GetCode() == OK {
		return nil
	}
	return &Error{Code: s.GetCode(), Message: s.GetMessage()}
}
