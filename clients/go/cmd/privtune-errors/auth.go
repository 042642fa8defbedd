package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	privtunev1 "github.com/privtune/privtune/clients/go/privtune/v1"
)

// transport is how privtune-errors connects: TLS, trusting the CA in caFile (the platform speaks
// nothing else).
func transport(caFile string) (credentials.TransportCredentials, error) {
	return credentials.NewClientTLSFromFile(caFile, "")
}

// callContext carries the caller's bearer token: the platform takes tenant and caller from its
// verified claims, never from headers.
func callContext(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// tokenClaims decodes a JWT's payload without verifying it: only to learn which tenant the token is
// of, and to forge a copy of it that the platform must refuse.
func tokenClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("the token is not a JWT (header.payload.signature)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the token's payload is not base64url: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("the token's payload is not a JSON object: %w", err)
	}
	return claims, nil
}

// tokenTenant is the tenant claim of the token.
func tokenTenant(token string) (string, error) {
	claims, err := tokenClaims(token)
	if err != nil {
		return "", err
	}
	tenant, _ := claims["tenant"].(string)
	if tenant == "" {
		return "", fmt.Errorf("the token has no tenant claim")
	}
	return tenant, nil
}

// otherTenant is a well-formed tenant id that is not tenant.
func otherTenant(tenant string) string {
	if tenant == "globex" {
		return "initech"
	}
	return "globex"
}

// forgeTenant is token with its tenant claim changed to tenant and the original signature kept:
// what a caller who holds one tenant's token would send to act in another.
func forgeTenant(token, tenant string) (string, error) {
	claims, err := tokenClaims(token)
	if err != nil {
		return "", err
	}
	claims["tenant"] = tenant
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2], nil
}

// authCases are the platform's refusals of a call whose identity is missing or forged, identity
// headers without a token among them.
func authCases(f fixture) []errorCase {
	ds := f.datasets
	other := otherTenant(f.tenant)
	list := func(md metadata.MD) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := ds.ListDatasets(metadata.NewOutgoingContext(ctx, md), &privtunev1.ListDatasetsRequest{})
			return err
		}
	}
	forged, err := forgeTenant(f.token, other)
	if err != nil { // the token was checked by main; a forged copy of it always encodes
		panic(err)
	}
	return []errorCase{
		{name: "ListDatasets without a token", code: codes.Unauthenticated, reason: "MISSING_CREDENTIALS",
			call: list(metadata.MD{})},
		{name: "ListDatasets with only the identity headers", code: codes.Unauthenticated, reason: "MISSING_CREDENTIALS",
			call: list(metadata.Pairs("x-privtune-tenant", f.tenant, "x-privtune-actor", "privtune-errors"))},
		{name: "ListDatasets authorization not Bearer", code: codes.Unauthenticated, reason: "MALFORMED_TOKEN",
			call: list(metadata.Pairs("authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:secret"))))},
		{name: "ListDatasets token with a forged tenant claim", code: codes.Unauthenticated, reason: "BAD_SIGNATURE",
			call: list(metadata.Pairs("authorization", "Bearer "+forged))},
		{name: "ListDatasets tenant header naming another tenant", code: codes.PermissionDenied, reason: "TENANT_MISMATCH",
			call: list(metadata.Pairs("authorization", "Bearer "+f.token, "x-privtune-tenant", other))},
	}
}
