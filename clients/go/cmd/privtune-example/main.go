// Command privtune-example registers a dataset, curates it and watches the curation job to its end:
// the smallest useful program on the generated Go client.
//
//	go run ./cmd/privtune-example -ca var/pki/ca.pem -token "$PRIVTUNE_TOKEN" \
//	    -uri file:///srv/privtune/tenants/acme/tickets
//
// It speaks TLS, trusting the CA given with -ca, and sends the bearer token given with -token: the
// platform takes tenant and caller from the token's verified claims, never from headers. It exits 0 when the job produced a dataset version, 1 when the job failed, 2 on a bad flag and 3
// when a call failed.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	privtunev1 "github.com/privtune/privtune/clients/go/privtune/v1"
)

func main() {
	target := flag.String("target", envOr("PRIVTUNE_TARGET", "127.0.0.1:50051"), "gRPC address of the platform [PRIVTUNE_TARGET]")
	uri := flag.String("uri", "", "storage URI of raw files already in the tenant's storage (required)")
	name := flag.String("name", "", "dataset name, unique in the tenant (default: the URI's last path element)")
	classification := flag.String("classification", "internal", "public, internal, confidential or restricted")
	recipe := flag.String("recipe", "auto", "curation recipe: auto, passthrough, tickets_to_sft or documents_to_qa")
	callTimeout := flag.Duration("timeout", 60*time.Second, "deadline of each unary call")
	watchTimeout := flag.Duration("watch-timeout", 10*time.Minute, "deadline for the curation job to finish")
	caFile := flag.String("ca", os.Getenv("PRIVTUNE_CA"), "PEM file of the CA that signed the platform's TLS certificate (required) [PRIVTUNE_CA]")
	token := flag.String("token", os.Getenv("PRIVTUNE_TOKEN"), "bearer token from your identity provider; the tenant and caller come from it (required) [PRIVTUNE_TOKEN]")
	flag.Parse()

	if *uri == "" {
		fmt.Fprintln(os.Stderr, "privtune-example: -uri is required")
		flag.Usage()
		os.Exit(2)
	}
	if *caFile == "" || *token == "" {
		fmt.Fprintln(os.Stderr, "privtune-example: -ca and -token are required: the platform speaks only TLS and takes "+
			"the tenant and caller only from a verified bearer token (docs/security.md); for `privtune up`, "+
			"-ca <data dir>/pki/ca.pem and a token from your identity provider or its development issuer")
		flag.Usage()
		os.Exit(2)
	}
	if *name == "" {
		*name = path.Base(*uri)
	}
	class, ok := privtunev1.DataClassification_value["DATA_CLASSIFICATION_"+strings.ToUpper(*classification)]
	if !ok {
		fmt.Fprintf(os.Stderr, "privtune-example: -classification %q is not one of public, internal, confidential, restricted\n", *classification)
		os.Exit(2)
	}
	rec, ok := privtunev1.CurationRecipe_value["CURATION_RECIPE_"+strings.ToUpper(*recipe)]
	if !ok {
		fmt.Fprintf(os.Stderr, "privtune-example: -recipe %q is not one of auto, passthrough, tickets_to_sft, documents_to_qa\n", *recipe)
		os.Exit(2)
	}

	transport, err := credentials.NewClientTLSFromFile(*caFile, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "privtune-example: read the CA certificate %s: %v\n", *caFile, err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(transport))
	if err != nil {
		fail("connect", err)
	}
	defer conn.Close()
	// The platform takes tenant and caller from the token's verified claims.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+*token)

	ex := example{
		datasets:    privtunev1.NewDatasetServiceClient(conn),
		curation:    privtunev1.NewCurationServiceClient(conn),
		callTimeout: *callTimeout,
	}
	dataset := ex.createDataset(ctx, &privtunev1.CreateDatasetRequest{
		Name:           *name,
		StorageUri:     *uri,
		Classification: privtunev1.DataClassification(class),
		RequestId:      requestID("dataset", *name, *uri),
	})
	fmt.Printf("dataset %s: %s, %d files, %d bytes\n", dataset.GetDatasetId(), dataset.GetName(),
		dataset.GetFileCount(), dataset.GetTotalBytes())

	job := ex.createCurationJob(ctx, &privtunev1.CreateCurationJobRequest{
		DatasetId: dataset.GetDatasetId(),
		RequestId: requestID("curation", dataset.GetDatasetId(), *recipe),
		// Unset fields take their documented defaults; set one to override it, e.g.
		// HoldoutFraction: proto.Float64(0.2).
		Config: &privtunev1.CurationConfig{Recipe: privtunev1.CurationRecipe(rec)},
	})
	fmt.Printf("curation job %s: %s\n", job.GetJobId(), job.GetState())

	ex.watchCurationJob(ctx, job.GetJobId(), *watchTimeout)

	job = ex.getCurationJob(ctx, job.GetJobId())
	if job.GetState() != privtunev1.CurationJobState_CURATION_JOB_STATE_SUCCEEDED {
		fmt.Fprintf(os.Stderr, "curation job %s ended %s (%s): %s\n", job.GetJobId(), job.GetState(),
			job.GetErrorCode(), job.GetReason())
		os.Exit(1)
	}
	fmt.Printf("dataset_version_id %s\n", job.GetDatasetVersionId())
}

// example holds the two service clients and the deadline every unary call gets.
type example struct {
	datasets    privtunev1.DatasetServiceClient
	curation    privtunev1.CurationServiceClient
	callTimeout time.Duration
}

func (ex example) createDataset(ctx context.Context, req *privtunev1.CreateDatasetRequest) *privtunev1.Dataset {
	ctx, cancel := context.WithTimeout(ctx, ex.callTimeout)
	defer cancel()
	resp, err := ex.datasets.CreateDataset(ctx, req)
	if err != nil {
		fail("CreateDataset", err)
	}
	return resp.GetDataset()
}

func (ex example) createCurationJob(ctx context.Context, req *privtunev1.CreateCurationJobRequest) *privtunev1.CurationJob {
	ctx, cancel := context.WithTimeout(ctx, ex.callTimeout)
	defer cancel()
	resp, err := ex.curation.CreateCurationJob(ctx, req)
	if err != nil {
		fail("CreateCurationJob", err)
	}
	return resp.GetJob()
}

func (ex example) getCurationJob(ctx context.Context, jobID string) *privtunev1.CurationJob {
	ctx, cancel := context.WithTimeout(ctx, ex.callTimeout)
	defer cancel()
	resp, err := ex.curation.GetCurationJob(ctx, &privtunev1.GetCurationJobRequest{JobId: jobID})
	if err != nil {
		fail("GetCurationJob", err)
	}
	return resp.GetJob()
}

// watchCurationJob prints the job's events until the server ends the stream, which it does (with
// OK, seen here as io.EOF) right after the job's final event.
func (ex example) watchCurationJob(ctx context.Context, jobID string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := ex.curation.WatchCurationJob(ctx, &privtunev1.WatchCurationJobRequest{JobId: jobID})
	if err != nil {
		fail("WatchCurationJob", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fail("WatchCurationJob", err)
		}
		event := resp.GetEvent()
		line := fmt.Sprintf("event %d %s", event.GetAggregateVersion(), event.GetType())
		if failed := event.GetCurationFailed(); failed != nil {
			line += fmt.Sprintf(" (%s: %s)", failed.GetErrorCode(), failed.GetReason())
		}
		fmt.Println(line)
	}
}

// requestID derives a create call's idempotency key from its inputs, so running the example twice
// answers with the dataset and job of the first run instead of creating new ones.
func requestID(kind string, parts ...string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + strings.Join(parts, "\x00")))
	return "example-" + kind + "-" + hex.EncodeToString(sum[:12])
}

// fail prints a failed call's status, with its machine-readable details, and exits 3.
func fail(call string, err error) {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "privtune-example: %s: %s: %s\n", call, st.Code(), st.Message())
	for _, detail := range st.Details() {
		if msg, ok := detail.(proto.Message); ok {
			fmt.Fprintf(os.Stderr, "  %s {%s}\n", msg.ProtoReflect().Descriptor().FullName(), prototext.MarshalOptions{}.Format(msg))
		}
	}
	os.Exit(3)
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
