package serial

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// chunks reads its strings one Read at a time, then fails with err.
type chunks struct {
	parts []string
	err   error
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, c.err
	}
	n := copy(p, c.parts[0])
	c.parts[0] = c.parts[0][n:]
	if c.parts[0] == "" {
		c.parts = c.parts[1:]
	}
	return n, nil
}

func TestExpect(t *testing.T) {
	errGone := errors.New("gone")
	big := strings.Repeat("x", 3*expectWindow)
	tests := []struct {
		name      string
		pattern   string
		parts     []string
		err       error
		wantMatch string
		wantEcho  string
		wantLast  string // for a miss
	}{
		{name: "match in one read", pattern: "login:", parts: []string{"boot\r\nvirtual login: "}, wantMatch: "login:", wantEcho: "boot\r\nvirtual login: "},
		{name: "match across reads", pattern: `Image sha256 [0-9a-f]{4}`, parts: []string{"Image sha2", "56 ab", "cd, 3 bytes"}, wantMatch: "Image sha256 abcd", wantEcho: "Image sha256 abcd, 3 bytes"},
		{name: "stops at the first match", pattern: "#", parts: []string{"a# ", "more"}, wantMatch: "#", wantEcho: "a# "},
		{name: "no match before the end", pattern: "login:", parts: []string{"line one\r\n", "last line\r\n\r\n"}, err: io.EOF, wantEcho: "line one\r\nlast line\r\n\r\n", wantLast: "last line"},
		{name: "stream fails", pattern: "never", parts: []string{"partial"}, err: errGone, wantEcho: "partial", wantLast: "partial"},
		{name: "window bounds the buffer", pattern: "(?s)START.*END", parts: []string{"START", big, "END"}, err: io.EOF, wantEcho: "START" + big + "END", wantLast: strings.Repeat("x", expectWindow-3) + "END"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var echo bytes.Buffer
			m, err := Expect(&chunks{parts: tt.parts, err: tt.err}, regexp.MustCompile(tt.pattern), &echo)
			require.True(t, tt.wantEcho == echo.String(), "output is echoed as it is read: got %q", echo.String())
			if tt.wantMatch != "" {
				require.NoError(t, err)
				require.Equal(t, tt.wantMatch, string(m))
				return
			}
			var nm *NoMatchError
			require.ErrorAs(t, err, &nm)
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, tt.pattern, nm.Pattern)
			require.Equal(t, tt.wantLast, nm.LastLine)
		})
	}
}

func TestExpectEchoFails(t *testing.T) {
	_, err := Expect(strings.NewReader("output"), regexp.MustCompile("x"), failWriter{})
	require.ErrorContains(t, err, "echo output")
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("stdout closed") }

func TestCopyUntilEscape(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  error
	}{
		{"uname\n", "uname\n", nil},
		{"ls\n\x1dignored", "ls\n", errEscaped},
		{"\x1d", "", errEscaped},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := copyUntilEscape(&out, strings.NewReader(tt.in))
		require.ErrorIs(t, err, tt.wantErr)
		require.Equal(t, tt.want, out.String())
	}
}
