package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1/coordinatorv1connect"
)

// Identity is who is calling.
type Identity struct {
	Kind token.Kind
	Name string
}

// Admin reports whether the caller is an admin.
func (i Identity) Admin() bool { return i.Kind == token.Admin }

func (i Identity) String() string { return string(i.Kind) + " " + i.Name }

type identityKey struct{}

// IdentityFrom returns the caller the auth interceptor let in.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// allowedKinds says which tokens each service takes.
func allowedKinds(procedure string) []token.Kind {
	switch {
	case strings.HasPrefix(procedure, "/"+coordinatorv1connect.ClientServiceName+"/"):
		return []token.Kind{token.Client, token.Admin}
	case strings.HasPrefix(procedure, "/"+coordinatorv1connect.ExporterServiceName+"/"):
		return []token.Kind{token.Exporter}
	case strings.HasPrefix(procedure, "/"+coordinatorv1connect.AdminServiceName+"/"):
		return []token.Kind{token.Admin}
	}
	return nil
}

// Authenticate checks the bearer token in h: signature, kind, expiry, and
// that the identity still exists with this token (deleting or rotating it
// revokes the token at once).
func (c *Coordinator) Authenticate(h http.Header, kinds ...token.Kind) (Identity, error) {
	raw, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return Identity{}, unauthenticated("no token: the call needs 'Authorization: Bearer TOKEN'; use a config from `jmp admin create client`")
	}
	now := time.Now()
	var claims *token.Claims
	var kind token.Kind
	var err error
	for _, kind = range kinds {
		claims, err = c.keys.Verify(raw, kind, token.CoordinatorAudience, now)
		if !errors.Is(err, token.ErrWrongKind) {
			break
		}
	}
	switch {
	case errors.Is(err, token.ErrExpired):
		return Identity{}, unauthenticated(fmt.Sprintf("%v; ask your lab admin for a new config", err))
	case errors.Is(err, token.ErrWrongKind):
		return Identity{}, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("this call needs %s token, and this is %s token; use a config made for it (admins: DATA_DIR/admin.yaml)",
				kindList(kinds), article(presentedKind(raw))))
	case err != nil:
		return Identity{}, unauthenticated(fmt.Sprintf("the token is not one this coordinator signed (%v); ask your lab admin for a new config", err))
	}
	id := Identity{Kind: kind, Name: claims.Subject}
	current, exists := c.tokenID(kind, id.Name)
	switch {
	case !exists:
		return Identity{}, unauthenticated(fmt.Sprintf("%s no longer exists: an admin deleted it; ask your lab admin for a new config", id))
	case current != claims.ID:
		return Identity{}, unauthenticated(fmt.Sprintf("the token of %s was revoked: an admin issued a new one; ask your lab admin for it", id))
	}
	return id, nil
}

// tokenID is the id of the valid token of the identity.
func (c *Coordinator) tokenID(kind token.Kind, name string) (string, bool) {
	c.cache.mu.RLock()
	defer c.cache.mu.RUnlock()
	switch kind {
	case token.Client:
		if o := c.cache.clients[name]; o != nil {
			return o.GetTokenId(), true
		}
	case token.Exporter:
		if o := c.cache.exporters[name]; o != nil {
			return o.GetTokenId(), true
		}
	case token.Admin:
		if o := c.cache.admins[name]; o != nil {
			return o.GetTokenId(), true
		}
	}
	return "", false
}

func kindList(kinds []token.Kind) string {
	var s []string
	for _, k := range kinds {
		s = append(s, article(string(k)))
	}
	return strings.Join(s, " or ")
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}

// presentedKind reads the kind a token claims to be, for error messages
// only: nothing is trusted from it.
func presentedKind(raw string) string {
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return "unreadable"
	}
	typ, _ := tok.Header["typ"].(string)
	kind := strings.TrimSuffix(strings.TrimPrefix(typ, "jumpmesh-"), "+jwt")
	if kind == "" {
		return "unknown"
	}
	return kind
}

// issue signs an identity token.
func (c *Coordinator) issue(kind token.Kind, name, tokenID string) (string, error) {
	now := time.Now()
	return c.keys.Sign(kind, &token.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   name,
		ID:        tokenID,
		Audience:  jwt.ClaimStrings{token.CoordinatorAudience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(c.cfg.TokenLifetime)),
	}})
}

// authInterceptor authenticates every call and puts the identity in its
// context.
type authInterceptor struct{ c *Coordinator }

func (a authInterceptor) check(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	kinds := allowedKinds(procedure)
	if kinds == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("unknown procedure %s", procedure))
	}
	id, err := a.c.Authenticate(h, kinds...)
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

func (a authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.check(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.check(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
