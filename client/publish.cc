// Publishing a directory as a signed release, co-signing a pending one, and
// renewing a tag.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/clock.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "client.h"
#include "progress.h"
#include "publish_session.h"
#include "safe_fs.h"

namespace cairn::client {

using cairn::v1::ChunkList;
using cairn::v1::Manifest;

namespace {
constexpr int kHasManyBatch = 8192;
}  // namespace

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
  struct stat read_as {};  // when it was chunked
};

absl::Status ListFiles(const std::string& dir, const std::string& link_root, bool skip_hf_state,
                       std::vector<LocalFile>* out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::symlink_status(dir, ec);
  if (ec || !fs::is_directory(st)) {
    return absl::InvalidArgumentError(dir + " is not a directory");
  }
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) return absl::InvalidArgumentError("cannot list " + dir + ": " + ec.message());
  // A directory that cannot be read ends the iteration with an error: the
  // error is checked before the end, or a release would silently lack it.
  std::string last = dir;
  for (;; it.increment(ec)) {
    if (ec) {
      return absl::PermissionDeniedError("cannot read " + last + " (" + ec.message() +
                                         "): nothing was published");
    }
    if (it == fs::recursive_directory_iterator()) break;
    last = it->path().string();
    // Lexically: fs::relative follows symlinks, naming a link by its target.
    std::string rel = it->path().lexically_relative(dir).generic_string();
    if (it.depth() == 0 && (it->path().filename() == ".cairn" ||
                            (skip_hf_state && it->path().filename() == ".cache"))) {
      // A pulled tree's signed manifest, or huggingface_hub's download state:
      // not content.
      it.disable_recursion_pending();
      continue;
    }
    fs::file_status s = it->symlink_status(ec);
    std::string abs = it->path().string();
    if (fs::is_symlink(s) && !link_root.empty()) {
      // A Hub cache snapshot links each file to its blob: follow a link only
      // to a regular file inside the cache's blobs/ folder.
      fs::path target = fs::canonical(it->path(), ec);
      const std::string t = target.string();
      if (ec || t.compare(0, link_root.size() + 1, link_root + "/") != 0) {
        return absl::InvalidArgumentError("refusing to publish " + rel + ": it links to " +
                                          (ec ? "nothing readable" : t) + ", outside " + link_root);
      }
      s = fs::symlink_status(target, ec);
      if (!fs::is_regular_file(s)) {
        return absl::InvalidArgumentError("refusing to publish " + rel + ": " + t +
                                          " is not a regular file");
      }
      abs = t;
    }
    if (fs::is_symlink(s)) {
      return absl::InvalidArgumentError("refusing to publish symlink " + rel +
                                        ": copy the target in, or remove the link");
    }
    if (fs::is_directory(s)) continue;
    if (!fs::is_regular_file(s)) {
      return absl::InvalidArgumentError("refusing to publish special file " + rel);
    }
    CAIRN_RETURN_IF_ERROR(ValidatePath(rel));
    if (::access(abs.c_str(), R_OK) != 0) {
      return ErrnoStatus(errno, "cannot read " + abs + ": nothing was published");
    }
    LocalFile f;
    f.path = rel;
    f.abs = abs;
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
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
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
  f->read_as = after;
  if (f->size == 0) {
    // An empty file has an empty chunk list; that is fine.
  }
  f->chunk_list = SerializeCanonical(cl);
  f->root = DigestName(Sha256Of(f->chunk_list));
  return absl::OkStatus();
}

// The manifest of release name+version on the node, if it has one.
absl::StatusOr<std::optional<Manifest>> FindRelease(Connection& node, const std::string& name,
                                                    const std::string& version) {
  cairn::v1::ListRequest req;
  req.set_prefix(name);
  // A release withheld after a revocation is the one to re-sign.
  req.set_include_withheld(true);
  cairn::v1::ListResponse resp;
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(node.registry()->List(ctx.get(), req, &resp), "list"));
  for (const auto& e : resp.entries()) {
    if (e.name() != name) continue;
    for (const auto& r : e.releases()) {
      if (r.version() != version) continue;
      CAIRN_ASSIGN_OR_RETURN(Resolved res,
                             ResolveVerified(node, nullptr, name + "@" + r.manifest_digest(),
                                             /*include_withheld=*/true));
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
  // Checked before any upload: a tag that expires at once only fails the
  // commit, after every chunk was sent.
  if (!o.tag.empty() && (o.tag_expires_days < 1 || o.tag_expires_days > 3650)) {
    return absl::InvalidArgumentError(
        StrCat("--tag-expires-days must be from 1 to 3650 (got ", o.tag_expires_days, ")"));
  }
  CAIRN_ASSIGN_OR_RETURN(auto keys, LoadKeys(o.key_paths));
  std::vector<const SigningKey*> signers;
  for (auto& k : keys) signers.push_back(k.get());

  std::vector<LocalFile> files;
  CAIRN_RETURN_IF_ERROR(ListFiles(o.dir, o.link_root, o.skip_hf_state, &files));

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
  CAIRN_ASSIGN_OR_RETURN(std::string session, OpenPublishSession(node, o.name, signers));
  // A publish that fails from here on frees its session on the node at once.
  bool session_used = false;
  absl::Cleanup end_session = [&] {
    if (!session_used) EndPublishSession(node, session);
  };

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
  m.set_created_unix(o.created_unix ? *o.created_unix : SystemNowUnix());
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
  for (const auto& [k, v] : o.metadata) {
    auto* e = m.add_metadata();
    e->set_key(k);
    e->set_value(v);
  }
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
      // The file as it was chunked (same inode, size, times) before and
      // after its chunks are read: their bytes are the ones hashed then, and
      // the node hashes each again on arrival (a change too quick for the
      // times to show is refused there), so they are not hashed a third time.
      auto changed = [&] {
        struct stat now;
        return ::fstat(fd.fd, &now) != 0 || !SameStat(now, f.read_as);
      };
      const auto changed_error = [&] {
        return absl::AbortedError("file " + f.path + " changed while being read; publish again");
      };
      if (changed()) {
        local = changed_error();
        break;
      }
      for (const auto& c : f.chunks) {
        if (!missing.contains(c.digest) || !sent.insert(c.digest).second) continue;
        auto* cd = req.add_chunks();
        cd->set_digest(std::string(DigestBytes(c.digest)));
        std::string* data = cd->mutable_data();
        data->resize(c.length);
        local = PreadAll(fd.fd, data->data(), c.length, c.offset);
        if (!local.ok()) break;
        res.chunks_uploaded++;
        res.bytes_uploaded += c.length;
        prog.Add(c.length);
        req_bytes += c.length;
        if (req.chunks_size() >= kChunksPerRequest || req_bytes >= kBytesPerRequest) send();
        if (!stream_ok) break;
      }
      if (local.ok() && changed()) local = changed_error();
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
    CAIRN_ASSIGN_OR_RETURN(std::string d, UploadObject(node, session, f.chunk_list,
                                                       cairn::v1::OBJECT_KIND_CHUNK_LIST));
    if (d != f.root) return absl::DataLossError("node stored chunk list under a different digest");
  }
  std::string payload = SerializeCanonical(m);
  res.manifest = DigestName(Sha256Of(payload));
  CAIRN_ASSIGN_OR_RETURN(auto menv, SignEnvelope(kManifestPayloadType, payload, signers));

  cairn::v1::CommitRequest creq;
  creq.set_session_id(session);
  CAIRN_RETURN_IF_ERROR(SetManifestEnvelope(node, SerializeCanonical(menv), &creq));
  if (!o.tag.empty()) {
    uint64_t version = 1;
    if (o.tag_version) {
      version = *o.tag_version;
    } else {
      // A withheld tag (its signer revoked) still holds its version.
      auto cur = ResolveVerified(node, nullptr, StrCat(o.name, ":", o.tag),
                                 /*include_withheld=*/true);
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
    rec.set_expires_unix(o.tag_expires_unix
                             ? *o.tag_expires_unix
                             : SystemNowUnix() + int64_t{o.tag_expires_days} * 86400);
    res.tag_expires_unix = rec.expires_unix();
    CAIRN_ASSIGN_OR_RETURN(auto tenv,
                           SignEnvelope(kTagPayloadType, SerializeCanonical(rec), signers));
    creq.set_tag_envelope(SerializeCanonical(tenv));
    res.tag = o.tag;
    res.tag_version = version;
  }
  cairn::v1::CommitResponse cresp;
  auto ctx = node.Context();
  absl::Status committed = FromGrpc(node.publish()->Commit(ctx.get(), creq, &cresp), "commit");
  session_used = committed.ok();  // the node freed it
  CAIRN_RETURN_IF_ERROR(committed);
  res.node = node.address();
  res.created_unix = m.created_unix();
  res.already_present = cresp.already_present();
  res.pending = cresp.pending();
  res.signatures = cresp.signatures();
  res.signatures_needed = cresp.signatures_needed();
  res.files = files.size();
  res.seconds = SecondsSince(t0);
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

}  // namespace cairn::client
