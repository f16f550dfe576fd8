#include "trust_admin.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "cairn/clock.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"

namespace cairn::client {

namespace fs = std::filesystem;
using cairn::v1::Envelope;
using cairn::v1::TrustRoot;

namespace {

constexpr size_t kMaxRootFile = kMaxTrustRootBytes + 8192;

std::string PendingPath(const std::string& trust_path) { return trust_path + ".pending"; }
std::string ArchivePath(const std::string& trust_path, uint64_t version) {
  return StrCat(trust_path, ".v", version);
}

absl::StatusOr<std::pair<Envelope, TrustRoot>> ParseRootEnvelope(std::string_view bytes,
                                                                 const std::string& what) {
  auto env = ParseEnvelope(bytes, kMaxRootFile);
  if (!env.ok()) return Annotate(env.status(), what);
  if (env->payload_type() != kTrustRootPayloadType) {
    return absl::InvalidArgumentError(what + " is not a trust root");
  }
  auto root = ParseTrustRoot(env->payload());
  if (!root.ok()) return Annotate(root.status(), what);
  return std::make_pair(std::move(*env), std::move(*root));
}

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& ids, const std::string& id) {
  for (const auto& x : ids) {
    if (x == id) return true;
  }
  return false;
}

// Keeps `old` as T.vN (refusing to replace a different archived vN), then
// writes `next` to T.
absl::Status Archive(const std::string& trust_path, uint64_t version, const std::string& bytes) {
  const std::string arch = ArchivePath(trust_path, version);
  if (::access(arch.c_str(), F_OK) == 0) {
    auto have = ReadFileLimited(arch, kMaxRootFile);
    if (have.ok() && *have == bytes) return absl::OkStatus();
    return absl::AlreadyExistsError(StrCat(arch, " already holds a different trust root v", version,
                                           "; move it away if it belongs to another trust root"));
  }
  return WriteFileAtomic(arch, bytes);
}

// Writes `env` (root `next`, successor of `cur`) to T when complete, else to
// T.pending.
absl::StatusOr<RootChange> Finish(const std::string& trust_path, const TrustRootView& cur,
                                  const TrustRoot& next, const Envelope& env) {
  RootChange out;
  out.version = next.version();
  out.signatures = CountSuccessorSignatures(cur.root(), next, env);
  out.envelope = SerializeCanonical(env);
  if (!out.signatures.complete()) {
    out.pending = true;
    out.written = PendingPath(trust_path);
    CAIRN_RETURN_IF_ERROR(WriteFileAtomic(out.written, out.envelope));
    return out;
  }
  // Never write a root that does not verify as the successor, now.
  auto verified = VerifySuccessor(cur, out.envelope, SystemNowUnix());
  if (!verified.ok()) return Annotate(verified.status(), "new trust root");
  CAIRN_RETURN_IF_ERROR(Archive(trust_path, cur.root().version(), cur.envelope_bytes()));
  CAIRN_RETURN_IF_ERROR(WriteFileAtomic(trust_path, out.envelope));
  std::error_code ec;
  fs::remove(PendingPath(trust_path), ec);
  out.written = trust_path;
  return out;
}

absl::Status CheckSigners(const TrustRoot& cur, const TrustRoot& next,
                          const std::vector<const SigningKey*>& keys) {
  for (const SigningKey* k : keys) {
    if (!Contains(cur.root_key_ids(), k->key_id()) && !Contains(next.root_key_ids(), k->key_id())) {
      return absl::PermissionDeniedError(
          StrCat("key ", k->key_id(), " is not a root key of v", cur.version(), " or v",
                 next.version(), " (root keys: ", StrJoin(cur.root_key_ids(), ", "), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrustRootView> LoadTrustFileForAdmin(const std::string& path) {
  return TrustRootView::Load(path, kIgnoreExpiry);
}

absl::StatusOr<std::vector<std::string>> TrustFileChain(const std::string& path) {
  fs::path p(path);
  fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string prefix = p.filename().string() + ".v";
  std::map<uint64_t, std::string> archived;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    uint64_t v = 0;
    if (!ParseInt(std::string_view(name).substr(prefix.size()), &v)) continue;
    CAIRN_ASSIGN_OR_RETURN(std::string bytes, ReadFileLimited(e.path().string(), kMaxRootFile));
    archived[v] = std::move(bytes);
  }
  if (ec) return absl::InvalidArgumentError("cannot list " + dir.string() + ": " + ec.message());
  std::vector<std::string> out;
  for (auto& [v, b] : archived) out.push_back(std::move(b));
  CAIRN_ASSIGN_OR_RETURN(std::string cur, ReadFileLimited(path, kMaxRootFile));
  out.push_back(std::move(cur));
  return out;
}

absl::StatusOr<RootChange> ProposeRoot(const std::string& trust_path, const TrustRootView& cur,
                                       TrustRoot next, const std::vector<const SigningKey*>& keys) {
  if (::access(PendingPath(trust_path).c_str(), F_OK) == 0) {
    return absl::FailedPreconditionError(
        StrCat(PendingPath(trust_path), " exists: finish it first (cairn trust sign --trust ",
               trust_path, " --key ROOTKEY) or delete it to abandon it"));
  }
  if (next.version() != cur.root().version() + 1) {
    return absl::InternalError("new root must be the next version");
  }
  if (next.root_key_ids_size() == 0 || next.root_threshold() == 0 ||
      next.root_threshold() > static_cast<uint32_t>(next.root_key_ids_size())) {
    return absl::InvalidArgumentError(
        StrCat("root threshold must be 1..", next.root_key_ids_size(), " (the root keys)"));
  }
  CAIRN_RETURN_IF_ERROR(CheckSigners(cur.root(), next, keys));
  CanonicalizeTrustRoot(&next);
  // Structural checks (delegations, thresholds) before anyone signs it.
  CAIRN_RETURN_IF_ERROR(ParseTrustRoot(SerializeCanonical(next)).status());
  CAIRN_ASSIGN_OR_RETURN(Envelope env,
                         SignEnvelope(kTrustRootPayloadType, SerializeCanonical(next), keys));
  return Finish(trust_path, cur, next, env);
}

absl::StatusOr<RootChange> PendingRoot(const std::string& trust_path) {
  const std::string pending = PendingPath(trust_path);
  if (::access(pending.c_str(), F_OK) != 0) {
    return absl::NotFoundError("no pending trust root (" + pending + ")");
  }
  CAIRN_ASSIGN_OR_RETURN(TrustRootView cur, LoadTrustFileForAdmin(trust_path));
  CAIRN_ASSIGN_OR_RETURN(std::string bytes, ReadFileLimited(pending, kMaxRootFile));
  CAIRN_ASSIGN_OR_RETURN(auto parsed, ParseRootEnvelope(bytes, pending));
  RootChange out;
  out.pending = true;
  out.written = pending;
  out.version = parsed.second.version();
  out.signatures = CountSuccessorSignatures(cur.root(), parsed.second, parsed.first);
  out.envelope = std::move(bytes);
  return out;
}

absl::StatusOr<RootChange> CoSignPendingRoot(const std::string& trust_path,
                                             const std::vector<const SigningKey*>& keys) {
  CAIRN_ASSIGN_OR_RETURN(TrustRootView cur, LoadTrustFileForAdmin(trust_path));
  const std::string pending = PendingPath(trust_path);
  auto bytes = ReadFileLimited(pending, kMaxRootFile);
  if (!bytes.ok()) {
    return absl::NotFoundError(StrCat("no pending trust root to sign (", pending,
                                      "): copy it from whoever proposed the change"));
  }
  CAIRN_ASSIGN_OR_RETURN(auto parsed, ParseRootEnvelope(*bytes, pending));
  auto& [env, next] = parsed;
  if (next.version() != cur.root().version() + 1) {
    return absl::FailedPreconditionError(StrCat(pending, " is v", next.version(), " but ",
                                                trust_path, " is v", cur.root().version(),
                                                ": it does not follow it"));
  }
  CAIRN_RETURN_IF_ERROR(CheckSigners(cur.root(), next, keys));
  // Signatures that do not verify (a tampered pending file) are dropped so
  // they can never count or confuse the count.
  std::vector<std::string> allowed(cur.root().root_key_ids().begin(),
                                   cur.root().root_key_ids().end());
  allowed.insert(allowed.end(), next.root_key_ids().begin(), next.root_key_ids().end());
  std::vector<std::string> good_old, good_new;
  CountValidSignatures(cur.root(), env, allowed, &good_old);
  CountValidSignatures(next, env, allowed, &good_new);
  Envelope clean = env;
  clean.clear_signatures();
  for (const auto& s : env.signatures()) {
    bool ok = std::find(good_old.begin(), good_old.end(), s.key_id()) != good_old.end() ||
              std::find(good_new.begin(), good_new.end(), s.key_id()) != good_new.end();
    bool dup = false;
    for (const auto& c : clean.signatures()) dup |= c.key_id() == s.key_id();
    if (ok && !dup) *clean.add_signatures() = s;
  }
  CAIRN_RETURN_IF_ERROR(AddSignatures(&clean, keys));
  ::unlink(pending.c_str());  // Finish rewrites it when still incomplete
  return Finish(trust_path, cur, next, clean);
}

absl::StatusOr<cairn::v1::OfferTrustRootsResponse> PushTrust(Connection& node,
                                                             const std::string& trust_path) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> chain, TrustFileChain(trust_path));
  cairn::v1::OfferTrustRootsRequest req;
  // At most the newest 64 that fit in one request (the node needs only
  // those past its own).
  size_t first = chain.size(), bytes = 0;
  while (first > 0 && chain.size() - first < 64 &&
         bytes + chain[first - 1].size() + 16 <= size_t{kMaxRequestBytes} - (64 << 10)) {
    bytes += chain[--first].size() + 16;
  }
  for (size_t i = first; i < chain.size(); ++i) req.add_chain(chain[i]);
  cairn::v1::OfferTrustRootsResponse resp;
  auto stub = cairn::v1::Federation::NewStub(node.channel());
  auto ctx = node.Context();
  CAIRN_RETURN_IF_ERROR(FromGrpc(stub->OfferTrustRoots(ctx.get(), req, &resp),
                                 "offering trust roots to " + node.address()));
  return resp;
}

absl::StatusOr<TrustUpdate> UpdateTrustFile(const std::vector<Connection*>& nodes,
                                            const std::string& trust_path,
                                            std::vector<std::string>* refused) {
  CAIRN_ASSIGN_OR_RETURN(TrustRootView cur, LoadTrustFileForAdmin(trust_path));
  TrustUpdate out;
  out.from = out.to = cur.root().version();
  std::optional<TrustRootView> best;
  std::vector<std::string> best_chain;
  std::vector<std::string> errors;
  // Every node is asked at once (one round trip in all, not one per node).
  std::vector<cairn::v1::TrustRootResponse> resps(nodes.size());
  std::vector<absl::Status> sts(nodes.size());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < nodes.size(); ++i) {
      threads.emplace_back([&, i] {
        cairn::v1::TrustRootRequest req;
        req.set_after_version(cur.root().version());
        auto stub = cairn::v1::Federation::NewStub(nodes[i]->channel());
        auto ctx = nodes[i]->Context();
        sts[i] = FromGrpc(stub->TrustRoot(ctx.get(), req, &resps[i]),
                          "trust roots of " + nodes[i]->address());
      });
    }
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    Connection* n = nodes[i];
    const cairn::v1::TrustRootResponse& resp = resps[i];
    const absl::Status& st = sts[i];
    if (!st.ok()) {
      errors.push_back(std::string(st.message()));
      continue;
    }
    std::vector<std::string> chain(resp.chain().begin(), resp.chain().end());
    auto walked = WalkTrustChain(cur, chain, SystemNowUnix());
    if (!walked.ok()) {
      errors.push_back(StrCat(n->address(), ": ", walked.status().message()));
      if (refused) refused->push_back(errors.back());
      continue;
    }
    if (walked->root().version() > (best ? best->root().version() : cur.root().version())) {
      best = std::move(*walked);
      best_chain = std::move(chain);
      out.source = n->address();
    }
  }
  if (!best) {
    if (refused == nullptr && !errors.empty() && errors.size() == nodes.size()) {
      return absl::UnavailableError("no node gave a usable trust root chain: " +
                                    StrJoin(errors, "; "));
    }
    // Nothing newer anywhere: the file is current (unless expired).
    if (cur.root().expires_unix() <= SystemNowUnix()) {
      return absl::FailedPreconditionError(
          StrCat("trust root v", cur.root().version(),
                 " has expired and no node holds a newer one: ask the root key holders to run "
                 "cairn trust rotate and cairn trust push"));
    }
    return out;
  }
  // Keep every version passed through, so this directory holds the chain too.
  CAIRN_RETURN_IF_ERROR(Archive(trust_path, cur.root().version(), cur.envelope_bytes()));
  for (const auto& bytes : best_chain) {
    auto parsed = ParseRootEnvelope(bytes, "trust root");
    if (!parsed.ok()) continue;
    uint64_t v = parsed->second.version();
    if (v > cur.root().version() && v < best->root().version()) {
      CAIRN_RETURN_IF_ERROR(Archive(trust_path, v, bytes));
    }
  }
  CAIRN_RETURN_IF_ERROR(WriteFileAtomic(trust_path, best->envelope_bytes()));
  out.to = best->root().version();
  return out;
}

absl::StatusOr<std::vector<std::unique_ptr<SigningKey>>> LoadPrivateKeys(
    const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("no --key given");
  std::vector<std::unique_ptr<SigningKey>> out;
  for (const auto& p : paths) {
    CAIRN_ASSIGN_OR_RETURN(auto k, SigningKey::LoadPrivate(p));
    for (const auto& o : out) {
      if (o->key_id() == k->key_id()) {
        return absl::InvalidArgumentError("key " + k->key_id() + " given twice");
      }
    }
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace cairn::client
