"""Who is calling, proven: TLS and mutual TLS (pki), verified bearer tokens (tokens), the roles each
RPC needs (roles), and the gRPC layer that turns a call into an authenticated, authorised Caller
(grpc_auth). Pure logic apart from key files and JWKS fetches."""
