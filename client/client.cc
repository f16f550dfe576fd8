#include "client.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "fetcher.h"
#include "progress.h"

namespace cairn::client {

using cairn::v1::ChunkList;
using cairn::v1::Manifest;

namespace {

constexpr int kMaxMessageBytes = 64 << 20;
constexpr int kChunksPerMessage = 16;         // <= node's kMaxChunksPerMessage
constexpr size_t kBytesPerMessage = 1 << 20;  // batch target
constexpr int kHasManyBatch = 8192;

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// RAII fd.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (fd >= 0) ::close(fd);
    fd = o.fd;
    o.fd = -1;
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

absl::Status PreadAll(int fd, char* buf, size_t len, uint64_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = ::pread(fd, buf + got, len - got, off + got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(errno, "read");
    if (r == 0) return absl::DataLossError("file shrank while being read");
    got += r;
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t w = ::write(fd, buf, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "write");
    buf += w;
    len -= w;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(s.error_code());
  std::string msg = s.error_message();
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    msg = "deadline exceeded (node too slow or unreachable)";
  } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    msg = "node unavailable: " + msg;
  }
  return absl::Status(code, StrCat(what, ": ", msg));
}

// ---------------- Connection ----------------

Connection::Connection(std::shared_ptr<grpc::Channel> channel, std::string address,
                       int timeout_seconds, TlsOptions tls)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      timeout_seconds_(timeout_seconds),
      tls_(std::move(tls)),
      registry_(cairn::v1::Registry::NewStub(channel_)),
      chunks_(cairn::v1::Chunks::NewStub(channel_)),
      publish_(cairn::v1::Publish::NewStub(channel_)) {}

absl::StatusOr<TlsOptions> TlsOptions::Load(const std::string& ca, const std::string& cert,
                                            const std::string& key) {
  TlsOptions t;
  if (ca.empty()) {
    if (!cert.empty() || !key.empty()) {
      return absl::InvalidArgumentError("--tls-cert/--tls-key need --tls-ca (the CA to trust)");
    }
    return t;
  }
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  auto read = [](const std::string& path, const char* what) -> absl::StatusOr<std::string> {
    auto b = ReadFileLimited(path, 1 << 20);
    if (!b.ok()) return Annotate(b.status(), what);
    if (b->find("-----BEGIN ") == std::string::npos) {
      return absl::InvalidArgumentError(StrCat(what, " ", path, " is not PEM"));
    }
    return b;
  };
  CAIRN_ASSIGN_OR_RETURN(t.ca_pem, read(ca, "TLS CA file"));
  if (!cert.empty()) {
    CAIRN_ASSIGN_OR_RETURN(t.cert_pem, read(cert, "TLS certificate"));
    CAIRN_ASSIGN_OR_RETURN(t.key_pem, read(key, "TLS key"));
  }
  return t;
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address, const TlsOptions& tls,
                                          bool private_pool) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Don't let gRPC's reconnect backoff outlast our deadline.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (private_pool) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A link that goes dead (no FIN, no RST) is found by an unanswered ping
  // within kKeepaliveMs * 2, however slowly a live one delivers.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (tls.enabled()) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = tls.ca_pem;
    o.pem_cert_chain = tls.cert_pem;
    o.pem_private_key = tls.key_pem;
    creds = grpc::SslCredentials(o);
  }
  return grpc::CreateCustomChannel(address, creds, args);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& address,
                                                             int timeout_seconds,
                                                             const TlsOptions& tls) {
  if (address.empty() || address.find(':') == std::string::npos) {
    return absl::InvalidArgumentError("node address '" + address + "' is not HOST:PORT");
  }
  auto ch = NewChannel(address, tls);
  auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds);
  if (!ch->WaitForConnected(deadline)) {
    return absl::UnavailableError(StrCat(
        "cannot reach node ", address, " within ", timeout_seconds, "s",
        tls.enabled() ? " (over TLS: check the node's certificate, its name and --tls-ca)" : ""));
  }
  return std::make_unique<Connection>(std::move(ch), address, timeout_seconds, tls);
}

std::unique_ptr<Connection> Connection::Another() const {
  return std::make_unique<Connection>(NewChannel(address_, tls_), address_, timeout_seconds_, tls_);
}

std::unique_ptr<grpc::ClientContext> Connection::Context() const {
  return Context(timeout_seconds_);
}

std::unique_ptr<grpc::ClientContext> Connection::Context(int seconds) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

// ---------------- Resolve ----------------

absl::StatusOr<Resolved> ResolveVerified(Connection& node, const TrustRootView* trust,
                                         const std::string& ref_text) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  cairn::v1::ResolveRequest req;
  req.set_ref(ref_text);
  cairn::v1::ResolveResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.registry()->Resolve(ctx.get(), req, &resp),
                                 StrCat("resolve ", ref.ToString(), " on ", node.address())));
  Resolved out;
  std::string want = ref.digest;
  int64_t now = SystemNowUnix();
  if (!resp.tag_envelope().empty() || want.empty()) {
    if (resp.tag_envelope().empty()) {
      return absl::DataLossError("node returned no signed tag for " + ref.ToString());
    }
    if (trust) {
      CAIRN_ASSIGN_OR_RETURN(out.tag, VerifyTagEnvelope(*trust, resp.tag_envelope(), now));
    } else {
      cairn::v1::Envelope e;
      cairn::v1::TagRecord rec;
      if (!e.ParseFromString(resp.tag_envelope()) || !rec.ParseFromString(e.payload())) {
        return absl::DataLossError("node returned a corrupt tag record");
      }
      out.tag = rec;
    }
    if (out.tag->name() != ref.name || out.tag->tag() != ref.tag) {
      return absl::PermissionDeniedError(StrCat("node returned tag ", out.tag->name(), ":",
                                                out.tag->tag(), " for ", ref.ToString()));
    }
    want = out.tag->manifest_digest();
  }
  std::string digest;
  if (trust) {
    CAIRN_ASSIGN_OR_RETURN(out.manifest,
                           VerifyManifestEnvelope(*trust, resp.manifest_envelope(), &digest));
  } else {
    cairn::v1::Envelope e;
    if (!e.ParseFromString(resp.manifest_envelope())) {
      return absl::DataLossError("node returned a corrupt manifest envelope");
    }
    CAIRN_ASSIGN_OR_RETURN(out.manifest, ParseManifest(e.payload()));
    digest = DigestName(Sha256Of(e.payload()));
  }
  if (digest != want) {
    return absl::PermissionDeniedError(
        StrCat("node returned manifest ", digest, " but ", ref.ToString(), " names ", want));
  }
  if (out.manifest.name() != ref.name) {
    return absl::PermissionDeniedError(
        StrCat("node returned a manifest of ", out.manifest.name(), " for ", ref.name));
  }
  out.digest = digest;
  out.envelope = resp.manifest_envelope();
  return out;
}

// ---------------- Publish ----------------

namespace {

struct LocalFile {
  std::string path;  // relative
  std::string abs;
  uint64_t size = 0;
  std::vector<ChunkInfo> chunks;
  Digest sha256{};
  std::string chunk_list;  // canonical bytes
  std::string root;
};

absl::Status ListFiles(const std::string& dir, std::vector<LocalFile>* out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::symlink_status(dir, ec);
  if (ec || !fs::is_directory(st)) {
    return absl::InvalidArgumentError(dir + " is not a directory");
  }
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) return absl::InvalidArgumentError("cannot list " + dir + ": " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return absl::InvalidArgumentError("cannot list " + dir + ": " + ec.message());
    std::string rel = fs::relative(it->path(), dir, ec).generic_string();
    if (it.depth() == 0 && it->path().filename() == ".cairn") {
      it.disable_recursion_pending();  // a pulled tree's signed manifest: not content
      continue;
    }
    fs::file_status s = it->symlink_status(ec);
    if (fs::is_symlink(s)) {
      return absl::InvalidArgumentError("refusing to publish symlink " + rel +
                                        ": copy the target in, or remove the link");
    }
    if (fs::is_directory(s)) continue;
    if (!fs::is_regular_file(s)) {
      return absl::InvalidArgumentError("refusing to publish special file " + rel);
    }
    CAIRN_RETURN_IF_ERROR(ValidatePath(rel));
    LocalFile f;
    f.path = rel;
    f.abs = it->path().string();
    out->push_back(std::move(f));
  }
  if (out->empty()) {
    return absl::InvalidArgumentError("nothing to publish: " + dir + " has no files");
  }
  std::sort(out->begin(), out->end(),
            [](const LocalFile& a, const LocalFile& b) { return a.path < b.path; });
  return absl::OkStatus();
}

bool SameStat(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ino == b.st_ino;
}

absl::Status ChunkLocalFile(LocalFile* f, const ChunkerParams& params, Progress* progress) {
  Fd fd(::open(f->abs.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.fd < 0) return ErrnoStatus(errno, "cannot open " + f->path);
  struct stat before, after;
  if (::fstat(fd.fd, &before) != 0) return ErrnoStatus(errno, "stat " + f->path);
  ChunkList cl;
  auto st = ChunkFd(
      fd.fd, params,
      [&](const ChunkInfo& c, std::string_view) {
        f->chunks.push_back(c);
        auto* ref = cl.add_chunks();
        ref->set_digest(std::string(DigestBytes(c.digest)));
        ref->set_length(c.length);
        if (progress) progress->Add(c.length);
        return absl::OkStatus();
      },
      &f->sha256, &f->size);
  if (!st.ok()) return Annotate(st, "chunking " + f->path);
  if (::fstat(fd.fd, &after) != 0) return ErrnoStatus(errno, "stat " + f->path);
  if (!SameStat(before, after) || static_cast<uint64_t>(after.st_size) != f->size) {
    return absl::AbortedError("file " + f->path + " changed while being read; publish again");
  }
  if (f->size == 0) {
    // An empty file has an empty chunk list; that is fine.
  }
  f->chunk_list = SerializeCanonical(cl);
  f->root = DigestName(Sha256Of(f->chunk_list));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::unique_ptr<SigningKey>>> LoadKeys(
    const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("publish needs --key KEYFILE");
  std::vector<std::unique_ptr<SigningKey>> keys;
  for (const auto& p : paths) {
    auto k = SigningKey::LoadPrivate(p);
    if (!k.ok()) return k.status();
    keys.push_back(std::move(*k));
  }
  return keys;
}

// The manifest of release name+version on the node, if it has one.
absl::StatusOr<std::optional<Manifest>> FindRelease(Connection& node, const std::string& name,
                                                    const std::string& version) {
  cairn::v1::ListRequest req;
  req.set_prefix(name);
  cairn::v1::ListResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.registry()->List(ctx.get(), req, &resp), "list"));
  for (const auto& e : resp.entries()) {
    if (e.name() != name) continue;
    for (const auto& r : e.releases()) {
      if (r.version() != version) continue;
      CAIRN_ASSIGN_OR_RETURN(Resolved res,
                             ResolveVerified(node, nullptr, name + "@" + r.manifest_digest()));
      return std::optional<Manifest>(std::move(res.manifest));
    }
  }
  return std::optional<Manifest>();
}

bool SameContent(const Manifest& a, const Manifest& b) {
  if (a.files_size() != b.files_size() || a.parents_size() != b.parents_size() ||
      a.license() != b.license()) {
    return false;
  }
  for (int i = 0; i < a.files_size(); ++i) {
    if (SerializeCanonical(a.files(i)) != SerializeCanonical(b.files(i))) return false;
  }
  for (int i = 0; i < a.parents_size(); ++i) {
    if (SerializeCanonical(a.parents(i)) != SerializeCanonical(b.parents(i))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<PublishResult> Publish(Connection& node, const PublishOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  CAIRN_RETURN_IF_ERROR(ValidateName(o.name));
  CAIRN_RETURN_IF_ERROR(ValidateVersion(o.version));
  if (!o.tag.empty()) CAIRN_RETURN_IF_ERROR(ValidateTag(o.tag));
  CAIRN_ASSIGN_OR_RETURN(auto keys, LoadKeys(o.key_paths));
  std::vector<const SigningKey*> signers;
  for (auto& k : keys) signers.push_back(k.get());

  std::vector<LocalFile> files;
  CAIRN_RETURN_IF_ERROR(ListFiles(o.dir, &files));

  // Parent, resolved on the node (no trust needed: the digest is what we sign).
  std::optional<cairn::v1::Parent> parent;
  if (!o.base.empty()) {
    CAIRN_ASSIGN_OR_RETURN(auto rel, ParseRelation(o.relation));
    CAIRN_ASSIGN_OR_RETURN(Resolved base, ResolveVerified(node, nullptr, o.base));
    parent.emplace();
    parent->set_name(base.manifest.name());
    parent->set_manifest_digest(base.digest);
    parent->set_relation(rel);
  }

  // Session first, so a key the node does not accept fails before any work.
  std::string session;
  {
    cairn::v1::ChallengeRequest creq;
    creq.set_name(o.name);
    cairn::v1::ChallengeResponse cresp;
    auto ctx = node.Context();
    CAIRN_RETURN_IF_ERROR(
        FromGrpc(node.publish()->Challenge(ctx.get(), creq, &cresp), "publish challenge"));
    cairn::v1::OpenSessionRequest sreq;
    sreq.set_name(o.name);
    sreq.set_challenge(cresp.challenge());
    std::string pae = Pae(kSessionPayloadType, StrCat(cresp.challenge(), "\n", o.name));
    for (const auto* k : signers) {
      CAIRN_ASSIGN_OR_RETURN(std::string sig, k->Sign(pae));
      auto* s = sreq.add_signatures();
      s->set_key_id(k->key_id());
      s->set_sig(sig);
    }
    cairn::v1::OpenSessionResponse sresp;
    auto ctx2 = node.Context();
    CAIRN_RETURN_IF_ERROR(
        FromGrpc(node.publish()->OpenSession(ctx2.get(), sreq, &sresp), "publish session"));
    session = sresp.session_id();
  }

  PublishResult res;
  res.name = o.name;
  res.version = o.version;
  uint64_t total = 0;
  for (auto& f : files) {
    struct stat st;
    if (::lstat(f.abs.c_str(), &st) == 0) total += st.st_size;
  }
  {
    Progress prog(o.progress, "chunking", total);
    for (auto& f : files) CAIRN_RETURN_IF_ERROR(ChunkLocalFile(&f, o.chunker, &prog));
  }
  for (const auto& f : files) {
    res.bytes_total += f.size;
    res.chunks_total += f.chunks.size();
  }

  Manifest m;
  m.set_name(o.name);
  m.set_version(o.version);
  m.set_license(o.license);
  m.set_created_unix(SystemNowUnix());
  for (const auto& f : files) {
    auto* fe = m.add_files();
    fe->set_path(f.path);
    fe->set_size(f.size);
    fe->set_sha256(DigestName(f.sha256));
    fe->set_root(f.root);
  }
  if (parent) *m.add_parents() = *parent;
  auto* md = m.add_metadata();
  md->set_key("cairn.chunker");
  md->set_value(StrCat("fastcdc min=", o.chunker.min_size, " avg=", o.chunker.avg_size,
                       " max=", o.chunker.max_size,
                       o.chunker.tensor_boundaries ? " tensor-boundaries" : ""));
  CanonicalizeManifest(&m);
  CAIRN_RETURN_IF_ERROR(ValidateManifest(m));
  // Publishing the same content again (say, after an interrupted publish whose
  // commit did land) must be idempotent: reuse the existing release's
  // creation time so the manifest comes out byte-identical.
  CAIRN_ASSIGN_OR_RETURN(std::optional<Manifest> existing, FindRelease(node, o.name, o.version));
  if (existing && SameContent(*existing, m)) {
    m.set_created_unix(existing->created_unix());
    *m.mutable_metadata() = existing->metadata();
  } else if (existing) {
    // Refuse before uploading anything; the node would refuse at commit.
    return absl::AlreadyExistsError(StrCat(
        "release ", o.name, " ", o.version,
        " already exists with different content; releases are immutable: publish a new version"));
  }
  // Which chunks does the node lack? Ask once per distinct chunk.
  absl::flat_hash_set<Digest, DigestHash> missing;
  {
    absl::flat_hash_set<Digest, DigestHash> asked;
    std::vector<Digest> batch;
    auto flush = [&]() -> absl::Status {
      if (batch.empty()) return absl::OkStatus();
      cairn::v1::HasManyRequest req;
      for (const auto& d : batch) req.add_digests(std::string(DigestBytes(d)));
      cairn::v1::HasManyResponse resp;
      auto ctx = node.Context();
      CAIRN_RETURN_IF_ERROR(
          FromGrpc(node.publish()->MissingChunks(ctx.get(), req, &resp), "missing-chunks query"));
      if (resp.present_size() != static_cast<int>(batch.size())) {
        return absl::DataLossError("node answered the missing-chunks query with the wrong count");
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!resp.present(i)) missing.insert(batch[i]);
      }
      batch.clear();
      return absl::OkStatus();
    };
    for (const auto& f : files) {
      for (const auto& c : f.chunks) {
        if (!asked.insert(c.digest).second) continue;
        batch.push_back(c.digest);
        if (batch.size() == kHasManyBatch) CAIRN_RETURN_IF_ERROR(flush());
      }
    }
    CAIRN_RETURN_IF_ERROR(flush());
  }

  // Upload the missing chunks, re-reading each and checking it did not change.
  if (!missing.empty()) {
    uint64_t upload_bytes = 0;
    for (const auto& f : files) {
      for (const auto& c : f.chunks) {
        if (missing.contains(c.digest)) upload_bytes += c.length;
      }
    }
    Progress prog(o.progress, "uploading", upload_bytes);
    // Deadline: generous for a slow uplink (32 KiB/s minimum) plus the timeout.
    auto ctx = node.Context(node.timeout_seconds() + static_cast<int>(upload_bytes / (32 << 10)));
    cairn::v1::PutChunksResponse presp;
    auto writer = node.publish()->PutChunks(ctx.get(), &presp);
    cairn::v1::PutChunksRequest req;
    req.set_session_id(session);
    size_t req_bytes = 0;
    absl::flat_hash_set<Digest, DigestHash> sent;
    absl::Status local;
    bool stream_ok = true;
    auto send = [&]() {
      if (req.chunks_size() == 0) return;
      if (!writer->Write(req)) stream_ok = false;
      req.Clear();
      req_bytes = 0;
    };
    for (const auto& f : files) {
      if (!stream_ok || !local.ok()) break;
      Fd fd(::open(f.abs.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (fd.fd < 0) {
        local = ErrnoStatus(errno, "cannot reopen " + f.path);
        break;
      }
      for (const auto& c : f.chunks) {
        if (!missing.contains(c.digest) || !sent.insert(c.digest).second) continue;
        auto* cd = req.add_chunks();
        cd->set_digest(std::string(DigestBytes(c.digest)));
        std::string* data = cd->mutable_data();
        data->resize(c.length);
        local = PreadAll(fd.fd, data->data(), c.length, c.offset);
        if (local.ok() && Sha256Of(*data) != c.digest) {
          local = absl::AbortedError("file " + f.path + " changed while being read; publish again");
        }
        if (!local.ok()) break;
        res.chunks_uploaded++;
        res.bytes_uploaded += c.length;
        prog.Add(c.length);
        req_bytes += c.length;
        if (req.chunks_size() >= kChunksPerMessage || req_bytes >= kBytesPerMessage) send();
        if (!stream_ok) break;
      }
    }
    if (local.ok() && stream_ok) send();
    if (!local.ok()) {
      ctx->TryCancel();
      writer->Finish().ok();  // the local error is the one to report
      return local;
    }
    writer->WritesDone();
    CAIRN_RETURN_IF_ERROR(FromGrpc(writer->Finish(), "uploading chunks"));
  }

  // Chunk lists, then the signed manifest and tag.
  for (const auto& f : files) {
    cairn::v1::PutObjectRequest req;
    req.set_session_id(session);
    req.set_data(f.chunk_list);
    cairn::v1::PutObjectResponse resp;
    auto ctx = node.Context();
    CAIRN_RETURN_IF_ERROR(
        FromGrpc(node.publish()->PutObject(ctx.get(), req, &resp), "uploading chunk list"));
    if (resp.digest() != f.root) {
      return absl::DataLossError("node stored chunk list under a different digest");
    }
  }
  std::string payload = SerializeCanonical(m);
  res.manifest = DigestName(Sha256Of(payload));
  CAIRN_ASSIGN_OR_RETURN(auto menv, SignEnvelope(kManifestPayloadType, payload, signers));

  cairn::v1::CommitRequest creq;
  creq.set_session_id(session);
  creq.set_manifest_envelope(SerializeCanonical(menv));
  if (!o.tag.empty()) {
    uint64_t version = 1;
    if (o.tag_version) {
      version = *o.tag_version;
    } else {
      auto cur = ResolveVerified(node, nullptr, StrCat(o.name, ":", o.tag));
      if (cur.ok()) {
        version = cur->tag->version() + 1;
      } else if (!absl::IsNotFound(cur.status())) {
        return cur.status();
      }
    }
    cairn::v1::TagRecord rec;
    rec.set_name(o.name);
    rec.set_tag(o.tag);
    rec.set_manifest_digest(res.manifest);
    rec.set_version(version);
    rec.set_expires_unix(SystemNowUnix() + int64_t{o.tag_expires_days} * 86400);
    CAIRN_ASSIGN_OR_RETURN(auto tenv,
                           SignEnvelope(kTagPayloadType, SerializeCanonical(rec), signers));
    creq.set_tag_envelope(SerializeCanonical(tenv));
    res.tag = o.tag;
    res.tag_version = version;
  }
  cairn::v1::CommitResponse cresp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.publish()->Commit(ctx.get(), creq, &cresp), "commit"));
  res.already_present = cresp.already_present();
  res.pending = cresp.pending();
  res.signatures = cresp.signatures();
  res.signatures_needed = cresp.signatures_needed();
  res.files = files.size();
  res.seconds = Since(t0);
  return res;
}

absl::StatusOr<CoSignResult> CoSign(Connection& node, const std::string& ref,
                                    const std::vector<const SigningKey*>& keys,
                                    const TrustRootView* trust) {
  CAIRN_ASSIGN_OR_RETURN(Ref r, ParseRef(ref));
  if (r.digest.empty()) {
    return absl::InvalidArgumentError(
        "name the pending release by digest: NAME@sha256:... (as "
        "printed by cairn publish)");
  }
  cairn::v1::PendingRequest req;
  req.set_manifest_digest(r.digest);
  cairn::v1::PendingResponse p;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(
      FromGrpc(node.publish()->GetPending(ctx.get(), req, &p), "pending release"));
  // Sign only what was asked for: the payload must hash to the digest given.
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Envelope menv,
                         ParseEnvelope(p.manifest_envelope(), kMaxEnvelopeBytes));
  if (menv.payload_type() != kManifestPayloadType ||
      DigestName(Sha256Of(menv.payload())) != r.digest) {
    return absl::DataLossError("the node's pending release is not " + r.digest);
  }
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Manifest m, ParseManifest(menv.payload()));
  if (m.name() != r.name) {
    return absl::InvalidArgumentError(StrCat(r.digest, " is a release of ", m.name()));
  }
  if (trust != nullptr) {
    for (const SigningKey* k : keys) {
      if (!trust->IsDelegated(k->key_id(), NamespaceOf(m.name()))) {
        return absl::PermissionDeniedError(
            StrCat("key ", k->key_id(), " is not delegated for namespace '", NamespaceOf(m.name()),
                   "' in trust root v", trust->root().version()));
      }
    }
  }
  cairn::v1::CoSignRequest creq;
  creq.set_manifest_digest(r.digest);
  std::string pae = Pae(menv.payload_type(), menv.payload());
  for (const SigningKey* k : keys) {
    CAIRN_ASSIGN_OR_RETURN(std::string sig, k->Sign(pae));
    auto* s = creq.add_manifest_signatures();
    s->set_key_id(k->key_id());
    s->set_sig(std::move(sig));
  }
  if (!p.tag_envelope().empty()) {
    CAIRN_ASSIGN_OR_RETURN(cairn::v1::Envelope tenv,
                           ParseEnvelope(p.tag_envelope(), kMaxTagBytes + 8192));
    CAIRN_ASSIGN_OR_RETURN(cairn::v1::TagRecord rec, ParseTagRecord(tenv.payload()));
    if (tenv.payload_type() != kTagPayloadType || rec.manifest_digest() != r.digest ||
        rec.name() != m.name()) {
      return absl::DataLossError("the pending tag record does not name this release");
    }
    std::string tpae = Pae(tenv.payload_type(), tenv.payload());
    for (const SigningKey* k : keys) {
      CAIRN_ASSIGN_OR_RETURN(std::string sig, k->Sign(tpae));
      auto* s = creq.add_tag_signatures();
      s->set_key_id(k->key_id());
      s->set_sig(std::move(sig));
    }
  }
  cairn::v1::CommitResponse cresp;
  auto ctx2 = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.publish()->CoSign(ctx2.get(), creq, &cresp), "co-sign"));
  CoSignResult out;
  out.name = m.name();
  out.version = m.version();
  out.manifest = r.digest;
  out.files = m.files_size();
  for (const auto& f : m.files()) out.bytes += f.size();
  out.pending = cresp.pending();
  out.signatures = cresp.signatures();
  out.signatures_needed = cresp.signatures_needed();
  return out;
}

// ---------------- Pull ----------------

namespace {

// Opens directory `rel` ('/'-separated, validated) beneath `root_fd`, creating
// missing components when `create`, never following a symlink: a pre-existing
// link in OUT cannot redirect a write outside it.
absl::StatusOr<Fd> OpenDirBeneath(int root_fd, std::string_view rel, bool create) {
  Fd cur(::dup(root_fd));
  if (cur.fd < 0) return ErrnoStatus(errno, "dup");
  if (rel.empty()) return cur;
  for (std::string_view seg : Split(rel, '/')) {
    std::string s(seg);
    if (create && ::mkdirat(cur.fd, s.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, "cannot create directory " + std::string(rel));
    }
    int next = ::openat(cur.fd, s.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return absl::FailedPreconditionError("refusing to write through " + std::string(rel) +
                                             ": a component is a symlink or not a directory");
      }
      return ErrnoStatus(errno, "cannot open directory " + std::string(rel));
    }
    cur = Fd(next);
  }
  return cur;
}

std::pair<std::string, std::string> SplitDirBase(const std::string& path) {
  size_t p = path.rfind('/');
  if (p == std::string::npos) return {"", path};
  return {path.substr(0, p), path.substr(p + 1)};
}

// Writes `data` to `name` in `dir_fd` atomically (temp + fsync + rename).
absl::Status WriteFileAt(int dir_fd, const std::string& name, std::string_view data) {
  std::string tmp = StrCat(".", name, ".tmp.", ::getpid());
  Fd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.fd < 0) return ErrnoStatus(errno, "cannot create " + name);
  absl::Status st = WriteAll(fd.fd, data.data(), data.size());
  if (st.ok() && ::fdatasync(fd.fd) != 0) st = ErrnoStatus(errno, "fdatasync " + name);
  if (st.ok() && ::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) {
    st = ErrnoStatus(errno, "rename " + name);
  }
  if (!st.ok()) ::unlinkat(dir_fd, tmp.c_str(), 0);
  return st;
}

absl::StatusOr<ChunkList> FetchChunkList(Connection& node, const cairn::v1::FileEntry& f) {
  cairn::v1::GetObjectRequest req;
  req.set_digest(f.root());
  cairn::v1::GetObjectResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.registry()->GetObject(ctx.get(), req, &resp),
                                 "fetching chunk list of " + f.path()));
  if (DigestName(Sha256Of(resp.data())) != f.root()) {
    return absl::DataLossError("node served a chunk list for " + f.path() +
                               " that does not match the signed manifest");
  }
  CAIRN_ASSIGN_OR_RETURN(ChunkList cl, ParseChunkList(resp.data()));
  uint64_t total = 0;
  for (const auto& c : cl.chunks()) total += c.length();
  if (total != f.size()) {
    return absl::DataLossError("chunk list of " + f.path() + " does not add up to its size");
  }
  return cl;
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Connection>>> OpenAll(
    const std::vector<std::string>& addresses, int timeout_seconds,
    std::vector<std::string>* unreachable, const TlsOptions& tls) {
  if (addresses.empty()) return absl::InvalidArgumentError("no node given");
  std::vector<absl::StatusOr<std::unique_ptr<Connection>>> got;
  for (size_t i = 0; i < addresses.size(); ++i) got.emplace_back(absl::UnknownError(""));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < addresses.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = Connection::Open(addresses[i], timeout_seconds, tls); });
  }
  for (auto& t : threads) t.join();
  std::vector<std::unique_ptr<Connection>> out;
  std::vector<std::string> errors;
  for (auto& g : got) {
    if (g.ok()) {
      out.push_back(std::move(*g));
    } else {
      errors.push_back(std::string(g.status().message()));
      if (unreachable) unreachable->push_back(errors.back());
    }
  }
  if (out.empty()) {
    if (errors.size() == 1) return absl::UnavailableError(errors[0]);
    return absl::UnavailableError("no node reachable: " + StrJoin(errors, "; "));
  }
  return out;
}

absl::StatusOr<MultiResolved> ResolveAcross(const std::vector<Connection*>& nodes,
                                            const TrustRootView* trust, const std::string& ref) {
  std::vector<absl::StatusOr<Resolved>> got(nodes.size(), absl::UnknownError(""));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < nodes.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = ResolveVerified(*nodes[i], trust, ref); });
  }
  for (auto& t : threads) t.join();
  MultiResolved out;
  std::optional<size_t> best;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!got[i].ok()) {
      out.warnings.push_back(std::string(got[i].status().message()));
      continue;
    }
    if (!best) {
      best = i;
      continue;
    }
    const Resolved& b = *got[*best];
    const Resolved& r = *got[i];
    if (!r.tag || !b.tag) continue;  // by digest: every answer is the same release
    if (r.tag->version() > b.tag->version()) {
      best = i;
    } else if (r.tag->version() == b.tag->version() && r.digest != b.digest) {
      out.warnings.push_back(StrCat(
          "nodes ", nodes[*best]->address(), " and ", nodes[i]->address(), " hold ", r.tag->name(),
          ":", r.tag->tag(), " version ", r.tag->version(),
          " naming different manifests (a signing error); using ", nodes[*best]->address(), "'s"));
    }
  }
  if (!best) {
    // The most telling error: a verification failure beats "not found".
    for (auto code : {absl::StatusCode::kPermissionDenied, absl::StatusCode::kDataLoss,
                      absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound}) {
      for (auto& g : got) {
        if (g.status().code() == code) {
          if (nodes.size() == 1) return g.status();
          return absl::Status(code, StrJoin(out.warnings, "; "));
        }
      }
    }
    if (nodes.size() == 1) return got[0].status();
    return absl::UnavailableError(StrJoin(out.warnings, "; "));
  }
  out.resolved = std::move(*got[*best]);
  out.node = *best;
  // Nodes that hold this very release first: they have its chunk lists.
  out.order.push_back(*best);
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i != *best && got[i].ok() && got[i]->digest == out.resolved.digest) out.order.push_back(i);
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (std::find(out.order.begin(), out.order.end(), i) == out.order.end()) out.order.push_back(i);
  }
  return out;
}

absl::StatusOr<PullResult> Pull(Connection& node, const TrustRootView& trust,
                                const PullOptions& o) {
  return Pull(std::vector<Connection*>{&node}, trust, o);
}

absl::StatusOr<PullResult> Pull(const std::vector<Connection*>& nodes, const TrustRootView& trust,
                                const PullOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  if (nodes.empty()) return absl::InvalidArgumentError("no node to pull from");
  // The extra chunk connections start connecting now, so their TCP and
  // HTTP/2 handshakes overlap the metadata round trips below (on a 300 ms
  // link that is seconds, not milliseconds).
  const int streams = std::clamp(o.streams_per_node, 1, 8);
  std::vector<std::vector<std::unique_ptr<Connection>>> extra(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (int k = 1; k < streams; ++k) {
      extra[i].push_back(nodes[i]->Another());
      extra[i].back()->channel()->GetState(/*try_to_connect=*/true);
    }
  }
  // Everything signed is verified before anything is written.
  CAIRN_ASSIGN_OR_RETURN(MultiResolved mr, ResolveAcross(nodes, &trust, o.ref));
  for (const auto& w : mr.warnings) std::fprintf(stderr, "cairn: warning: %s\n", w.c_str());
  Resolved& r = mr.resolved;
  if (r.tag && !o.state_dir.empty()) {
    CAIRN_RETURN_IF_ERROR(CheckAndRecordTag(o.state_dir, trust, *r.tag, nodes[mr.node]->address()));
  }
  PullResult res;
  res.manifest = r.digest;
  res.name = r.manifest.name();
  res.version = r.manifest.version();
  for (const auto& f : r.manifest.files()) res.bytes_total += f.size();

  PackStoreOptions cache_opts;
  cache_opts.durable = false;  // a cache: survive a killed process, re-verify on read
  cache_opts.verify_on_read = true;
  cache_opts.buffer_bytes = 0;  // every chunk reaches the file at once: a killed pull resumes
  // One process at a time owns the cache; like apt's lock, wait for it (the
  // other pull's chunks are then ours for free) rather than fail.
  auto cache = OpenPackChunkStore(o.cache_dir, cache_opts);
  for (int waited = 0; absl::IsFailedPrecondition(cache.status()); ++waited) {
    if (waited == 0) {
      std::fprintf(stderr, "cairn: waiting for the cache %s, in use by another cairn process...\n",
                   o.cache_dir.c_str());
    }
    if (o.cache_wait_seconds >= 0 && waited >= o.cache_wait_seconds * 4) {
      return absl::FailedPreconditionError(
          "cache " + o.cache_dir +
          " is still in use by another cairn process; pass --cache DIR to use another");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    cache = OpenPackChunkStore(o.cache_dir, cache_opts);
  }
  if (!cache.ok()) return Annotate(cache.status(), "cache");

  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec) return absl::InvalidArgumentError("cannot create " + o.out + ": " + ec.message());
  Fd root(::open(o.out.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.fd < 0) return ErrnoStatus(errno, "cannot open " + o.out);

  // Chunk lists come from `ordered` (one connection per node); chunks from
  // `sources`: `streams_per_node` connections to each node.
  std::vector<Connection*> ordered, sources;
  for (size_t i : mr.order) {
    ordered.push_back(nodes[i]);
    sources.push_back(nodes[i]);
    for (auto& e : extra[i]) sources.push_back(e.get());
  }
  FetchOptions fo;
  fo.window_bytes = o.window_bytes;
  fo.min_rate = o.min_rate;
  fo.rate_seconds = o.rate_seconds;
  fo.stall_seconds = o.stall_seconds;
  Fetcher fetcher(sources, cache->get(), fo);

  Progress prog(o.progress, "pulling", res.bytes_total);
  std::optional<std::chrono::steady_clock::time_point> first_ask;
  std::chrono::steady_clock::time_point last_chunk;
  std::string data, wbuf;
  wbuf.reserve(4 << 20);
  int file_index = 0;
  // A file's chunk list from the first usable node that serves a valid one.
  auto chunk_list = [&](const cairn::v1::FileEntry& f) -> absl::StatusOr<ChunkList> {
    absl::StatusOr<ChunkList> cl = absl::UnavailableError("no node left to ask");
    std::vector<std::string> cl_errors;
    for (size_t i = 0; i < ordered.size(); ++i) {
      if (!fetcher.Usable(i * streams)) continue;
      cl = FetchChunkList(*ordered[i], f);
      if (cl.ok()) return cl;
      cl_errors.push_back(StrCat(ordered[i]->address(), ": ", cl.status().message()));
    }
    if (cl_errors.empty()) return fetcher.NoneLeft("the chunk list of " + f.path());
    return absl::Status(cl.status().code(), StrJoin(cl_errors, "; "));
  };
  // The next file's chunk list is asked for while this file's chunks arrive,
  // so a many-file release pays no round trip per file.
  std::future<absl::StatusOr<ChunkList>> next_list;
  const int nfiles = r.manifest.files_size();
  for (int fi = 0; fi < nfiles; ++fi) {
    const cairn::v1::FileEntry& f = r.manifest.files(fi);
    absl::StatusOr<ChunkList> cl = fi == 0 ? chunk_list(f) : next_list.get();
    if (fi + 1 < nfiles) {
      next_list = std::async(std::launch::async, chunk_list, std::cref(r.manifest.files(fi + 1)));
    }
    if (!cl.ok()) return cl.status();
    res.chunks_total += cl->chunks_size();
    std::vector<Fetcher::Want> wanted;
    absl::flat_hash_set<Digest, DigestHash> to_fetch;
    for (const auto& c : cl->chunks()) {
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
      if (to_fetch.contains(d)) continue;
      CAIRN_ASSIGN_OR_RETURN(bool cached, (*cache)->Has(d));
      if (cached) continue;
      to_fetch.insert(d);
      wanted.push_back({d, c.length()});
    }
    auto [dir, base] = SplitDirBase(f.path());
    CAIRN_ASSIGN_OR_RETURN(Fd dfd, OpenDirBeneath(root.fd, dir, /*create=*/true));
    std::string tmp = StrCat(".cairn-partial-", ::getpid(), "-", file_index++);
    Fd out(
        ::openat(dfd.fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (out.fd < 0) return ErrnoStatus(errno, "cannot create a temporary file for " + f.path());
    auto fail = [&](absl::Status st) {
      ::unlinkat(dfd.fd, tmp.c_str(), 0);
      return st;
    };
    if (!wanted.empty() && !first_ask) first_ask = std::chrono::steady_clock::now();
    fetcher.Add(wanted);
    ParallelSha256 sha;  // whole-file hash on the second core
    uint64_t written = 0;
    for (const auto& c : cl->chunks()) {
      Digest d;
      std::memcpy(d.data(), c.digest().data(), 32);
      if (to_fetch.erase(d) > 0) {
        // Verified against its digest (and stored in the cache) by the fetcher.
        absl::Status st = fetcher.Next(&data);
        if (!st.ok()) return fail(Annotate(st, "fetching " + f.path() + "; nothing written"));
        last_chunk = std::chrono::steady_clock::now();
        res.chunks_fetched++;
        res.bytes_fetched += data.size();
      } else {
        absl::Status st = (*cache)->Get(d, &data);
        if (!st.ok()) return fail(Annotate(st, "cache"));
        res.chunks_from_cache++;
      }
      wbuf.append(data);
      written += data.size();
      prog.Add(data.size());
      if (wbuf.size() >= (4u << 20)) {
        absl::Status st = WriteAll(out.fd, wbuf.data(), wbuf.size());
        if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
        sha.Update(std::move(wbuf));
        wbuf = sha.TakeBuffer();
        wbuf.reserve(4 << 20);
      }
    }
    absl::Status st = WriteAll(out.fd, wbuf.data(), wbuf.size());
    sha.Update(std::move(wbuf));
    wbuf = sha.TakeBuffer();
    if (!st.ok()) return fail(Annotate(st, "writing " + f.path()));
    if (written != f.size() || DigestName(sha.Finish()) != f.sha256()) {
      return fail(absl::DataLossError("assembled " + f.path() +
                                      " does not match its signed SHA-256; nothing kept"));
    }
    if (o.fsync && ::fdatasync(out.fd) != 0)
      return fail(ErrnoStatus(errno, "fdatasync " + f.path()));
    if (::renameat(dfd.fd, tmp.c_str(), dfd.fd, base.c_str()) != 0) {
      return fail(ErrnoStatus(errno, "cannot rename into place " + f.path()));
    }
    res.files++;
  }
  CAIRN_ASSIGN_OR_RETURN(Fd meta_dir, OpenDirBeneath(root.fd, ".cairn", /*create=*/true));
  CAIRN_RETURN_IF_ERROR(WriteFileAt(meta_dir.fd, "manifest.envelope", r.envelope));
  for (const auto& st : fetcher.Stats()) {  // one line per node, streams added up
    auto it = std::find_if(res.sources.begin(), res.sources.end(),
                           [&](const auto& s) { return s.address == st.address; });
    if (it == res.sources.end()) {
      res.sources.push_back({st.address, 0, 0, ""});
      it = res.sources.end() - 1;
    }
    it->bytes += st.bytes;
    it->chunks += st.chunks;
    if (it->demoted.empty()) it->demoted = st.demoted;
  }
  res.seconds = Since(t0);
  if (first_ask) {
    res.transfer_seconds = std::chrono::duration<double>(last_chunk - *first_ask).count();
  }
  return res;
}

// ---------------- Verify ----------------

absl::StatusOr<VerifyResult> VerifyTree(const std::string& dir, const TrustRootView& trust) {
  auto env = ReadFileLimited(dir + "/.cairn/manifest.envelope", kMaxEnvelopeBytes);
  if (!env.ok()) {
    return absl::NotFoundError(dir +
                               " has no readable signed manifest (.cairn/manifest.envelope): " +
                               std::string(env.status().message()));
  }
  VerifyResult res;
  CAIRN_ASSIGN_OR_RETURN(Manifest m, VerifyManifestEnvelope(trust, *env, &res.manifest));
  res.name = m.name();
  res.version = m.version();
  Fd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.fd < 0) return ErrnoStatus(errno, "cannot open " + dir);
  absl::flat_hash_set<std::string> listed;
  std::string buf(4 << 20, '\0');
  for (const auto& f : m.files()) {
    listed.insert(f.path());
    auto [d, base] = SplitDirBase(f.path());
    auto dfd = OpenDirBeneath(root.fd, d, /*create=*/false);
    if (!dfd.ok()) {
      res.problems.push_back(f.path() + ": missing");
      continue;
    }
    Fd fd(::openat(dfd->fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (fd.fd < 0) {
      res.problems.push_back(f.path() + (errno == ENOENT ? ": missing" : ": cannot open"));
      continue;
    }
    if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      res.problems.push_back(f.path() + ": not a regular file");
      continue;
    }
    if (static_cast<uint64_t>(st.st_size) != f.size()) {
      res.problems.push_back(StrCat(f.path(), ": size ", st.st_size, ", signed ", f.size()));
      continue;
    }
    Sha256 sha;
    ssize_t n;
    while ((n = ::read(fd.fd, buf.data(), buf.size())) > 0) sha.Update(buf.data(), n);
    if (n < 0) {
      res.problems.push_back(f.path() + ": read error");
      continue;
    }
    if (DigestName(sha.Finish()) != f.sha256()) {
      res.problems.push_back(f.path() + ": content differs from the signed SHA-256");
      continue;
    }
    res.files_ok++;
  }
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = std::filesystem::relative(it->path(), dir, ec).generic_string();
    if (it.depth() == 0 && rel == ".cairn") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_directory() && !listed.contains(rel)) res.extra.push_back(rel);
  }
  std::sort(res.extra.begin(), res.extra.end());
  return res;
}

}  // namespace cairn::client
