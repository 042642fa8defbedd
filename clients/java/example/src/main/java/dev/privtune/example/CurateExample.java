package dev.privtune.example;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.ResourceInfo;
import dev.privtune.api.v1.CreateCurationJobRequest;
import dev.privtune.api.v1.CreateDatasetRequest;
import dev.privtune.api.v1.CurationConfig;
import dev.privtune.api.v1.CurationJob;
import dev.privtune.api.v1.CurationJobState;
import dev.privtune.api.v1.CurationRecipe;
import dev.privtune.api.v1.CurationServiceGrpc;
import dev.privtune.api.v1.CurationServiceGrpc.CurationServiceBlockingStub;
import dev.privtune.api.v1.DataClassification;
import dev.privtune.api.v1.Dataset;
import dev.privtune.api.v1.DatasetServiceGrpc;
import dev.privtune.api.v1.DatasetServiceGrpc.DatasetServiceBlockingStub;
import dev.privtune.api.v1.EventEnvelope;
import dev.privtune.api.v1.GetCurationJobRequest;
import dev.privtune.api.v1.GetDatasetRequest;
import dev.privtune.api.v1.WatchCurationJobRequest;
import dev.privtune.api.v1.WatchCurationJobResponse;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Registers a dataset from raw files already in the tenant's storage, curates it into a dataset
 * version and watches the job to its end; then shows how a client reads a privtune error.
 *
 * <pre>
 * java -cp 'target/privtune-example-0.2.0.jar:target/lib/*' dev.privtune.example.CurateExample \
 *     --target 127.0.0.1:50051 --ca var/pki/ca.pem --token "$PRIVTUNE_TOKEN" \
 *     --storage-uri file:///.../tenants/acme/support
 * </pre>
 *
 * <p>It speaks TLS, trusting the CA given with --ca, and sends the bearer token given with --token:
 * the platform takes tenant and caller from the token's verified claims, never from headers. Every
 * option can also come from the environment: PRIVTUNE_TARGET, PRIVTUNE_CA, PRIVTUNE_TOKEN,
 * PRIVTUNE_STORAGE_URI. Exit status: 0 when the job made a dataset version and the
 * error came back as documented, 1 when the job failed or a call failed, 2 for bad usage, 3 when
 * the server's error broke the contract (wrong code, or no google.rpc.ErrorInfo in its details).
 */
public final class CurateExample {
  static final int EXIT_OK = 0;
  static final int EXIT_FAILED = 1;
  static final int EXIT_USAGE = 2;
  static final int EXIT_CONTRACT = 3;

  // The caller sends a bearer token; tenant and caller come from its verified claims.
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  static final String USAGE = String.join("\n",
      "usage: CurateExample --ca FILE --token JWT --storage-uri URI [options]",
      "  --ca FILE              PEM of the CA that signed the platform's TLS certificate [PRIVTUNE_CA]",
      "  --token JWT            bearer token from your identity provider; tenant and caller come from it",
      "                         [PRIVTUNE_TOKEN]",
      "  --storage-uri URI      raw files in the tenant's storage, file:// or s3:// [PRIVTUNE_STORAGE_URI]",
      "  --target HOST:PORT     privtune gRPC address [PRIVTUNE_TARGET] (default 127.0.0.1:50051)",
      "  --name N               dataset name (default java-example-<random>)",
      "  --recipe R             auto, passthrough, tickets_to_sft or documents_to_qa (default auto)",
      "  --call-timeout S       deadline of each unary call, seconds (default 30)",
      "  --watch-timeout S      deadline of the job watch, seconds (default 600)");

  static final Set<String> OPTIONS = Set.of("ca", "token", "storage-uri", "target", "name", "recipe",
      "call-timeout", "watch-timeout");

  /** What to run, from the command line and the environment. */
  record Options(String target, String storageUri, String name, CurationRecipe recipe,
      long callTimeoutSeconds, long watchTimeoutSeconds, String ca, String token) {

    static Options parse(String[] args, Map<String, String> env) {
      Map<String, String> given = new HashMap<>();
      for (int i = 0; i < args.length; i++) {
        String flag = args[i];
        if (!flag.startsWith("--") || i + 1 >= args.length) {
          throw new IllegalArgumentException("expected --option value, got '" + flag + "'");
        }
        if (!OPTIONS.contains(flag.substring(2))) {
          throw new IllegalArgumentException("unknown option " + flag + (flag.equals("--tenant")
              || flag.equals("--actor") ? " (tenant and caller come from the token)" : ""));
        }
        given.put(flag.substring(2), args[++i]);
      }
      String storageUri = given.getOrDefault("storage-uri", env.getOrDefault("PRIVTUNE_STORAGE_URI", ""));
      String ca = given.getOrDefault("ca", env.getOrDefault("PRIVTUNE_CA", ""));
      String token = given.getOrDefault("token", env.getOrDefault("PRIVTUNE_TOKEN", ""));
      if (storageUri.isEmpty()) {
        throw new IllegalArgumentException("--storage-uri is required");
      }
      if (ca.isEmpty() || token.isEmpty()) {
        throw new IllegalArgumentException("--ca and --token are required: the platform speaks only TLS and "
            + "takes the tenant and caller only from a verified bearer token (docs/security.md)");
      }
      String recipe = given.getOrDefault("recipe", "auto");
      CurationRecipe parsedRecipe;
      try {
        parsedRecipe = CurationRecipe.valueOf("CURATION_RECIPE_" + recipe.toUpperCase(Locale.ROOT));
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("unknown recipe '" + recipe + "'");
      }
      return new Options(
          given.getOrDefault("target", env.getOrDefault("PRIVTUNE_TARGET", "127.0.0.1:50051")),
          storageUri,
          given.getOrDefault("name", "java-example-" + UUID.randomUUID().toString().substring(0, 8)),
          parsedRecipe,
          seconds(given, "call-timeout", 30),
          seconds(given, "watch-timeout", 600),
          ca,
          token);
    }

    private static long seconds(Map<String, String> given, String flag, long fallback) {
      String value = given.get(flag);
      try {
        return value == null ? fallback : Long.parseLong(value);
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("--" + flag + " takes whole seconds, got '" + value + "'");
      }
    }
  }

  private final Options options;
  private final DatasetServiceBlockingStub datasets;
  private final CurationServiceBlockingStub curation;

  CurateExample(Channel channel, Options options) {
    Metadata identity = new Metadata();
    identity.put(AUTHORIZATION, "Bearer " + options.token());
    Channel withIdentity =
        ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(identity));
    this.options = options;
    this.datasets = DatasetServiceGrpc.newBlockingStub(withIdentity);
    this.curation = CurationServiceGrpc.newBlockingStub(withIdentity);
  }

  public static void main(String[] args) throws InterruptedException {
    if (args.length == 1 && (args[0].equals("-h") || args[0].equals("--help"))) {
      System.out.println(USAGE);
      return;
    }
    Options options;
    try {
      options = Options.parse(args, System.getenv());
    } catch (IllegalArgumentException e) {
      System.err.println("error: " + e.getMessage() + "\n" + USAGE);
      System.exit(EXIT_USAGE);
      return;
    }
    ChannelCredentials credentials;
    try {
      credentials = TlsChannelCredentials.newBuilder().trustManager(new File(options.ca())).build();
    } catch (IOException e) {
      System.err.println("error: cannot read the CA certificate " + options.ca() + ": " + e.getMessage());
      System.exit(EXIT_USAGE);
      return;
    }
    ManagedChannel channel = Grpc.newChannelBuilder(options.target(), credentials).build();
    int exit;
    try {
      CurateExample example = new CurateExample(channel, options);
      exit = example.curateNewDataset();
      if (exit == EXIT_OK) {
        exit = example.showUnknownDatasetError();
      }
    } catch (StatusRuntimeException e) {
      System.err.println("error: privtune at " + options.target() + ": " + describe(e));
      exit = EXIT_FAILED;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(exit);
  }

  /** Register the raw files, curate them, follow the job to its end and report the outcome. */
  int curateNewDataset() {
    // A retry of a Create call with the same request_id returns the first call's result.
    Dataset dataset = datasets.withDeadlineAfter(options.callTimeoutSeconds(), TimeUnit.SECONDS)
        .createDataset(CreateDatasetRequest.newBuilder()
            .setName(options.name())
            .setStorageUri(options.storageUri())
            .setClassification(DataClassification.DATA_CLASSIFICATION_INTERNAL)
            .setRequestId(UUID.randomUUID().toString())
            .build())
        .getDataset();
    System.out.printf("dataset %s registered: %s, %d files, %d bytes%n", dataset.getDatasetId(),
        dataset.getName(), dataset.getFileCount(), dataset.getTotalBytes());

    CurationJob job = curation.withDeadlineAfter(options.callTimeoutSeconds(), TimeUnit.SECONDS)
        .createCurationJob(CreateCurationJobRequest.newBuilder()
            .setDatasetId(dataset.getDatasetId())
            .setRequestId(UUID.randomUUID().toString())
            .setConfig(CurationConfig.newBuilder().setRecipe(options.recipe()))
            .build())
        .getJob();
    System.out.printf("curation job %s requested%n", job.getJobId());

    // The stream ends (OK) right after the job's final event.
    Iterator<WatchCurationJobResponse> events =
        curation.withDeadlineAfter(options.watchTimeoutSeconds(), TimeUnit.SECONDS)
            .watchCurationJob(WatchCurationJobRequest.newBuilder().setJobId(job.getJobId()).build());
    while (events.hasNext()) {
      EventEnvelope event = events.next().getEvent();
      System.out.printf("event %s (#%d)%n", event.getType(), event.getAggregateVersion());
    }

    job = curation.withDeadlineAfter(options.callTimeoutSeconds(), TimeUnit.SECONDS)
        .getCurationJob(GetCurationJobRequest.newBuilder().setJobId(job.getJobId()).build())
        .getJob();
    if (job.getState() != CurationJobState.CURATION_JOB_STATE_SUCCEEDED) {
      System.out.printf("job %s %s: %s (%s)%n", job.getJobId(), job.getState(), job.getReason(),
          job.getErrorCode());
      return EXIT_FAILED;
    }
    System.out.printf("job %s succeeded: dataset_version_id %s%n", job.getJobId(),
        job.getDatasetVersionId());
    return EXIT_OK;
  }

  /**
   * Ask for a dataset that does not exist: the call fails NOT_FOUND, and the reason a program
   * should branch on is in the status details (google.rpc.ErrorInfo), not in the message.
   */
  int showUnknownDatasetError() {
    String unknownId = "ds-" + UUID.randomUUID().toString().replace("-", "").substring(0, 24);
    try {
      datasets.withDeadlineAfter(options.callTimeoutSeconds(), TimeUnit.SECONDS)
          .getDataset(GetDatasetRequest.newBuilder().setDatasetId(unknownId).build());
      System.err.printf("error: GetDataset(%s) succeeded, expected NOT_FOUND%n", unknownId);
      return EXIT_CONTRACT;
    } catch (StatusRuntimeException e) {
      if (e.getStatus().getCode() != Status.Code.NOT_FOUND) {
        System.err.printf("error: GetDataset(%s) expected NOT_FOUND, got %s%n", unknownId, describe(e));
        return EXIT_CONTRACT;
      }
      Optional<ErrorInfo> info = detail(e, ErrorInfo.class);
      if (info.isEmpty()) {
        System.err.printf("error: GetDataset(%s) failed NOT_FOUND without google.rpc.ErrorInfo: %s%n",
            unknownId, describe(e));
        return EXIT_CONTRACT;
      }
      System.out.printf("GetDataset(%s): %s, reason %s (domain %s)%n", unknownId,
          e.getStatus().getCode(), info.get().getReason(), info.get().getDomain());
      detail(e, ResourceInfo.class).ifPresent(resource -> System.out.printf(
          "  resource %s %s%n", resource.getResourceType(), resource.getResourceName()));
      return EXIT_OK;
    }
  }

  /** The first detail of this type in the error's google.rpc.Status, if any. */
  static <T extends com.google.protobuf.Message> Optional<T> detail(
      StatusRuntimeException e, Class<T> type) {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status == null) {
      return Optional.empty();
    }
    for (Any any : status.getDetailsList()) {
      if (any.is(type)) {
        try {
          return Optional.of(any.unpack(type));
        } catch (InvalidProtocolBufferException bad) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  /** One line for a person: the code, the message, and the details a program would act on. */
  static String describe(StatusRuntimeException e) {
    StringBuilder line = new StringBuilder(e.getStatus().getCode().name());
    if (e.getStatus().getDescription() != null) {
      line.append(": ").append(e.getStatus().getDescription());
    }
    if (e.getStatus().getCause() != null) {
      line.append(" (").append(e.getStatus().getCause().getMessage()).append(')');
    }
    detail(e, ErrorInfo.class).ifPresent(info -> line.append(" [reason ").append(info.getReason()).append(']'));
    detail(e, BadRequest.class).ifPresent(bad -> bad.getFieldViolationsList().forEach(v ->
        line.append(" [").append(v.getField()).append(": ").append(v.getDescription()).append(']')));
    return line.toString();
  }
}
