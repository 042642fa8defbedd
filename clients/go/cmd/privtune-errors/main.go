// Command privtune-errors checks, against a running platform, that every error path of the dataset
// and curation APIs answers with the right status code and machine-readable details: a
// google.rpc.ErrorInfo (domain "privtune.dev", a stable UPPER_SNAKE reason), a google.rpc.BadRequest
// naming the field at fault by its full path, and a google.rpc.ResourceInfo for unknown resources.
//
//	go run ./cmd/privtune-errors -ca var/pki/ca.pem -token "$PRIVTUNE_TOKEN" \
//	    -uri file:///.../acme/a -other-uri file:///.../acme/b
//
// It speaks TLS (-ca) with a bearer token (-token), as the platform requires, and also checks that a
// call whose identity is missing or forged is refused (authCases in auth.go).
//
// The expectations are one table, cases() below. It prints one line per case and exits 1 when any
// case fails, 2 on a bad flag and 3 when the setup (registering a dataset) fails.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	privtunev1 "github.com/privtune/privtune/clients/go/privtune/v1"
)

const domain = "privtune.dev"

// Well-formed ids that no server ever issued.
const (
	unknownDatasetID = "ds-000000000000000000000000"
	unknownJobID     = "cj-000000000000000000000000"
)

// reasonPattern is google.rpc.ErrorInfo's rule for reason: UPPER_SNAKE_CASE, at most 63 characters.
var reasonPattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,61}[A-Z0-9]$`)

// errorCase is one call that must fail, and how.
type errorCase struct {
	name   string
	call   func(ctx context.Context) error
	code   codes.Code
	reason string // ErrorInfo.reason; "": any valid reason
	field  string // a BadRequest FieldViolation must name this path; "": no BadRequest required
	// ResourceInfo that must be attached; "": none required.
	resourceType, resourceName string
}

// fixture is what the cases call: the two service clients and a dataset registered by the setup.
type fixture struct {
	datasets  privtunev1.DatasetServiceClient
	curation  privtunev1.CurationServiceClient
	dataset   *privtunev1.Dataset
	uri       string // where the setup's dataset lives
	otherURI  string // another folder with files, for a second dataset
	runSuffix string // keeps names unique across runs against the same platform
	tenant    string // the tenant the calls act in
	token     string // the caller's bearer token
}

func cases(f fixture) []errorCase {
	ds, cu := f.datasets, f.curation
	// Each request is valid but for the one thing its case is about.
	internal := privtunev1.DataClassification_DATA_CLASSIFICATION_INTERNAL
	createDataset := func(req *privtunev1.CreateDatasetRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := ds.CreateDataset(ctx, req); return err }
	}
	createJob := func(req *privtunev1.CreateCurationJobRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := cu.CreateCurationJob(ctx, req); return err }
	}
	return []errorCase{
		{name: "CreateDataset empty name", code: codes.InvalidArgument, field: "name",
			call: createDataset(&privtunev1.CreateDatasetRequest{StorageUri: f.uri, Classification: internal})},
		{name: "CreateDataset empty storage_uri", code: codes.InvalidArgument, field: "storage_uri",
			call: createDataset(&privtunev1.CreateDatasetRequest{Name: "no-storage-" + f.runSuffix,
				Classification: internal})},
		{name: "CreateDataset name taken", code: codes.AlreadyExists, reason: "DATASET_NAME_TAKEN", field: "name",
			resourceType: "privtune.v1.Dataset", resourceName: f.dataset.GetName(),
			call: createDataset(&privtunev1.CreateDatasetRequest{Name: f.dataset.GetName(), StorageUri: f.otherURI,
				Classification: internal})},
		{name: "CreateDataset no classification", code: codes.InvalidArgument, field: "classification",
			call: createDataset(&privtunev1.CreateDatasetRequest{Name: "unclassified-" + f.runSuffix,
				StorageUri: f.otherURI})},
		{name: "CreateDataset outside the tenant", code: codes.PermissionDenied, reason: "OUTSIDE_TENANT_STORAGE",
			field: "storage_uri",
			call: createDataset(&privtunev1.CreateDatasetRequest{Name: "etc-" + f.runSuffix, StorageUri: "file:///etc",
				Classification: internal})},
		{name: "CreateDataset checksum mismatch", code: codes.FailedPrecondition, reason: "CHECKSUM_MISMATCH",
			field: "checksum_sha256",
			call: createDataset(&privtunev1.CreateDatasetRequest{Name: "mismatch-" + f.runSuffix,
				StorageUri: f.otherURI, Classification: internal, ChecksumSha256: strings.Repeat("0", 64)})},
		{name: "GetDataset unknown id", code: codes.NotFound, reason: "DATASET_NOT_FOUND",
			resourceType: "privtune.v1.Dataset", resourceName: unknownDatasetID,
			call: func(ctx context.Context) error {
				_, err := ds.GetDataset(ctx, &privtunev1.GetDatasetRequest{DatasetId: unknownDatasetID})
				return err
			}},
		{name: "GetDataset empty id", code: codes.InvalidArgument, field: "dataset_id",
			call: func(ctx context.Context) error {
				_, err := ds.GetDataset(ctx, &privtunev1.GetDatasetRequest{})
				return err
			}},
		{name: "ListDatasets forged page_token", code: codes.InvalidArgument, reason: "INVALID_PAGE_TOKEN",
			field: "page_token",
			call: func(ctx context.Context) error {
				_, err := ds.ListDatasets(ctx, &privtunev1.ListDatasetsRequest{PageToken: "forged"})
				return err
			}},
		{name: "ListDatasets page_size too large", code: codes.InvalidArgument, field: "page_size",
			call: func(ctx context.Context) error {
				_, err := ds.ListDatasets(ctx, &privtunev1.ListDatasetsRequest{PageSize: 100000})
				return err
			}},
		{name: "WatchDataset unknown id", code: codes.NotFound, reason: "DATASET_NOT_FOUND",
			resourceType: "privtune.v1.Dataset", resourceName: unknownDatasetID,
			call: func(ctx context.Context) error {
				return firstMessage(ds.WatchDataset(ctx, &privtunev1.WatchDatasetRequest{DatasetId: unknownDatasetID}))
			}},
		{name: "CreateCurationJob holdout_fraction 0.9", code: codes.InvalidArgument, field: "config.holdout_fraction",
			call: createJob(&privtunev1.CreateCurationJobRequest{DatasetId: f.dataset.GetDatasetId(),
				Config: &privtunev1.CurationConfig{HoldoutFraction: proto.Float64(0.9)}})},
		{name: "CreateCurationJob dedupe.threshold 2", code: codes.InvalidArgument, field: "config.dedupe.threshold",
			call: createJob(&privtunev1.CreateCurationJobRequest{DatasetId: f.dataset.GetDatasetId(),
				Config: &privtunev1.CurationConfig{Dedupe: &privtunev1.DedupeSettings{Threshold: proto.Float64(2)}}})},
		{name: "CreateCurationJob redact_pii false on internal data", code: codes.InvalidArgument,
			reason: "PII_REDACTION_REQUIRED", field: "config.redact_pii",
			call: createJob(&privtunev1.CreateCurationJobRequest{DatasetId: f.dataset.GetDatasetId(),
				Config: &privtunev1.CurationConfig{RedactPii: proto.Bool(false)}})},
		{name: "CreateCurationJob unknown PII entity", code: codes.InvalidArgument, reason: "INVALID_CURATION_CONFIG",
			field: "config.pii.entities",
			call: createJob(&privtunev1.CreateCurationJobRequest{DatasetId: f.dataset.GetDatasetId(),
				Config: &privtunev1.CurationConfig{Pii: &privtunev1.PiiSettings{Entities: []string{"SHOE_SIZE"}}}})},
		{name: "CreateCurationJob empty dataset_id", code: codes.InvalidArgument, field: "dataset_id",
			call: createJob(&privtunev1.CreateCurationJobRequest{})},
		{name: "CreateCurationJob unknown dataset", code: codes.NotFound, reason: "DATASET_NOT_FOUND",
			call: createJob(&privtunev1.CreateCurationJobRequest{DatasetId: unknownDatasetID})},
		{name: "GetCurationJob unknown id", code: codes.NotFound, reason: "CURATION_JOB_NOT_FOUND",
			resourceType: "privtune.v1.CurationJob", resourceName: unknownJobID,
			call: func(ctx context.Context) error {
				_, err := cu.GetCurationJob(ctx, &privtunev1.GetCurationJobRequest{JobId: unknownJobID})
				return err
			}},
		{name: "ListCurationJobs forged page_token", code: codes.InvalidArgument, reason: "INVALID_PAGE_TOKEN",
			field: "page_token",
			call: func(ctx context.Context) error {
				_, err := cu.ListCurationJobs(ctx, &privtunev1.ListCurationJobsRequest{PageToken: "forged"})
				return err
			}},
		{name: "WatchCurationJob unknown id", code: codes.NotFound, reason: "CURATION_JOB_NOT_FOUND",
			resourceType: "privtune.v1.CurationJob", resourceName: unknownJobID,
			call: func(ctx context.Context) error {
				return firstMessage(cu.WatchCurationJob(ctx, &privtunev1.WatchCurationJobRequest{JobId: unknownJobID}))
			}},
	}
}

// firstMessage returns a server stream's error, which a server reports on the first Recv.
func firstMessage[T any](stream grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// check returns what is wrong with err as the answer to c; none: it is right.
func check(c errorCase, err error) []string {
	if err == nil {
		return []string{fmt.Sprintf("want %s, the call succeeded", c.code)}
	}
	st, ok := status.FromError(err)
	if !ok {
		return []string{fmt.Sprintf("not a gRPC status: %v", err)}
	}
	var problems []string
	if st.Code() != c.code {
		problems = append(problems, fmt.Sprintf("code: want %s, got %s", c.code, st.Code()))
	}
	var info *errdetails.ErrorInfo
	var fields []string
	var resource *errdetails.ResourceInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		case *errdetails.ResourceInfo:
			resource = d
		case error: // a detail the client could not decode
			problems = append(problems, fmt.Sprintf("undecodable detail: %v", d))
		}
	}
	switch {
	case info == nil:
		problems = append(problems, "no google.rpc.ErrorInfo in the details")
	case info.GetDomain() != domain:
		problems = append(problems, fmt.Sprintf("ErrorInfo.domain: want %q, got %q", domain, info.GetDomain()))
	case !reasonPattern.MatchString(info.GetReason()):
		problems = append(problems, fmt.Sprintf("ErrorInfo.reason %q is not UPPER_SNAKE_CASE", info.GetReason()))
	case c.reason != "" && info.GetReason() != c.reason:
		problems = append(problems, fmt.Sprintf("ErrorInfo.reason: want %q, got %q", c.reason, info.GetReason()))
	}
	if c.field != "" && !slices.Contains(fields, c.field) {
		problems = append(problems, fmt.Sprintf("BadRequest: want a violation of %q, got fields %q", c.field, fields))
	}
	if c.resourceType != "" && (resource.GetResourceType() != c.resourceType || resource.GetResourceName() != c.resourceName) {
		problems = append(problems, fmt.Sprintf("ResourceInfo: want %s %q, got %q %q", c.resourceType, c.resourceName,
			resource.GetResourceType(), resource.GetResourceName()))
	}
	return problems
}

func main() {
	target := flag.String("target", envOr("PRIVTUNE_TARGET", "127.0.0.1:50051"), "gRPC address of the platform [PRIVTUNE_TARGET]")
	tenant := flag.String("tenant", os.Getenv("PRIVTUNE_TENANT"), "tenant to act in, if given the token's (optional: a check) [PRIVTUNE_TENANT]")
	uri := flag.String("uri", "", "storage URI of raw files in the tenant's storage (required)")
	otherURI := flag.String("other-uri", "", "storage URI of other raw files in the tenant's storage (required)")
	callTimeout := flag.Duration("timeout", 60*time.Second, "deadline of each call")
	verbose := flag.Bool("v", false, "print every case's status details")
	caFile := flag.String("ca", os.Getenv("PRIVTUNE_CA"), "PEM file of the CA that signed the platform's TLS certificate (required) [PRIVTUNE_CA]")
	token := flag.String("token", os.Getenv("PRIVTUNE_TOKEN"), "bearer token from your identity provider; the tenant comes from it (required) [PRIVTUNE_TOKEN]")
	flag.Parse()
	if *uri == "" || *otherURI == "" || *caFile == "" || *token == "" {
		fmt.Fprintln(os.Stderr, "privtune-errors: -uri, -other-uri, -ca and -token are required: the platform speaks only "+
			"TLS and takes the tenant and caller only from a verified bearer token (docs/security.md)")
		flag.Usage()
		os.Exit(2)
	}
	claimed, err := tokenTenant(*token)
	if err != nil {
		fmt.Fprintf(os.Stderr, "privtune-errors: -token: %v\n", err)
		os.Exit(2)
	}
	if *tenant != "" && *tenant != claimed {
		fmt.Fprintf(os.Stderr, "privtune-errors: -tenant %q, but the token is of tenant %q (a token acts for its own tenant only)\n", *tenant, claimed)
		os.Exit(2)
	}
	*tenant = claimed

	creds, err := transport(*caFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "privtune-errors: read the CA certificate %s: %v\n", *caFile, err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(os.Stderr, "privtune-errors: connect to %s: %v\n", *target, err)
		os.Exit(3)
	}
	defer conn.Close()
	ctx := callContext(*token)

	f := fixture{
		datasets:  privtunev1.NewDatasetServiceClient(conn),
		curation:  privtunev1.NewCurationServiceClient(conn),
		uri:       *uri,
		otherURI:  *otherURI,
		runSuffix: randomSuffix(),
		tenant:    *tenant,
		token:     *token,
	}
	setupCtx, cancel := context.WithTimeout(ctx, *callTimeout)
	resp, err := f.datasets.CreateDataset(setupCtx, &privtunev1.CreateDatasetRequest{
		Name: "errors-" + f.runSuffix, StorageUri: *uri,
		Classification: privtunev1.DataClassification_DATA_CLASSIFICATION_INTERNAL,
	})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "privtune-errors: setup: CreateDataset at %s: %s\n", *uri, describe(err))
		os.Exit(3)
	}
	f.dataset = resp.GetDataset()

	all := append(cases(f), authCases(f)...)
	failed := 0
	for _, c := range all {
		callCtx, cancel := context.WithTimeout(ctx, *callTimeout)
		err := c.call(callCtx)
		cancel()
		problems := check(c, err)
		if len(problems) == 0 {
			fmt.Printf("ok    %s\n", c.name)
		} else {
			failed++
			fmt.Printf("FAIL  %s\n", c.name)
			for _, p := range problems {
				fmt.Printf("        %s\n", p)
			}
		}
		if len(problems) > 0 || *verbose {
			fmt.Printf("        got %s\n", describe(err))
		}
	}
	fmt.Printf("privtune-errors: %d of %d error cases as expected\n", len(all)-failed, len(all))
	if failed > 0 {
		os.Exit(1)
	}
}

// describe is a status on one line: code, message and each detail in text form.
func describe(err error) string {
	if err == nil {
		return "OK"
	}
	st := status.Convert(err)
	parts := []string{fmt.Sprintf("%s %q", st.Code(), st.Message())}
	for _, d := range st.Details() {
		if m, ok := d.(proto.Message); ok {
			parts = append(parts, fmt.Sprintf("%s{%s}", m.ProtoReflect().Descriptor().FullName(),
				prototext.MarshalOptions{}.Format(m)))
		}
	}
	return strings.Join(parts, " ")
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
