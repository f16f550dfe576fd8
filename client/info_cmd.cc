// `cairn info` and `cairn ls` against nodes (inspect_cmd.h).
#include <cstdio>

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cli_util.h"
#include "inspect_cmd.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "store_cmd.h"
#include "trust_admin.h"

namespace cairn::client {

using json = nlohmann::json;

namespace {

struct Info {
  std::string state = "published";  // or "yanked", "pending", "withheld"
  std::string reason;
  std::string digest, envelope, node;
  cairn::v1::Manifest manifest;
  std::optional<cairn::v1::TagRecord> tag;
  uint32_t signatures = 0, signatures_needed = 0;
  int64_t pending_expires = 0;
};

// A release waiting for co-signatures that `ref` names on one of `conns`.
absl::StatusOr<Info> FindPending(const std::vector<std::unique_ptr<Connection>>& conns,
                                 const Ref& ref) {
  for (const auto& c : conns) {
    auto listed = ListNames(*c, ref.name, /*include_pending=*/true);
    if (!listed.ok()) continue;
    for (const auto& e : listed->entries()) {
      if (e.name() != ref.name) continue;
      for (const auto& p : e.pending()) {
        bool match = !ref.digest.empty()    ? p.manifest_digest() == ref.digest
                     : !ref.version.empty() ? p.version() == ref.version
                                            : p.tag() == ref.tag;
        if (!match) continue;
        auto got = PendingRelease(*c, p.manifest_digest());
        if (!got.ok()) continue;
        Info info;
        cairn::v1::Envelope env;
        if (!env.ParseFromString(got->manifest_envelope()) ||
            DigestName(Sha256Of(env.payload())) != p.manifest_digest()) {
          return absl::DataLossError("node " + c->address() +
                                     " returned a pending manifest that is not " +
                                     p.manifest_digest());
        }
        CAIRN_ASSIGN_OR_RETURN(info.manifest, ParseManifest(env.payload()));
        info.state = "pending";
        info.digest = p.manifest_digest();
        info.envelope = got->manifest_envelope();
        info.node = c->address();
        info.signatures = got->signatures();
        info.signatures_needed = got->signatures_needed();
        info.pending_expires = got->expires_unix();
        info.reason =
            StrCat("waiting for co-signatures: ", got->signatures(), " of ",
                   got->signatures_needed(), ", dropped unless complete by ",
                   IsoDate(got->expires_unix()), "; each co-signer runs: cairn sign ", ref.name,
                   "@", p.manifest_digest(), " --key KEY --node ", c->address());
        return info;
      }
    }
  }
  return absl::NotFoundError("");
}

}  // namespace

int RunInfo(CliContext* ctx, const std::vector<std::unique_ptr<Connection>>& conns,
            const TrustRootView* tr, const std::string& ref_text) {
  auto ref = ParseRef(ref_text);
  if (!ref.ok()) return Fail(ref.status());
  Info info;
  // Every node is asked; the highest valid tag version wins.
  auto mr = ResolveAcross(Raw(conns), tr, ref_text);
  if (!mr.ok()) {
    if (auto yanked = YankedTagTarget(*conns[0], ref_text, mr.status())) {
      mr = ResolveAcross(Raw(conns), tr, *yanked);  // shown, marked yanked
    }
  }
  if (mr.ok()) {
    if (conns.size() > 1) {
      for (const auto& w : mr->warnings) std::fprintf(stderr, "cairn: warning: %s\n", w.c_str());
    }
    if (tr && mr->resolved.tag) {
      absl::Status st =
          CheckAndRecordTag(DefaultStateDir(), *tr, *mr->resolved.tag, conns[mr->node]->address());
      if (!st.ok()) return Fail(st);
    }
    info.digest = mr->resolved.digest;
    info.envelope = mr->resolved.envelope;
    info.manifest = mr->resolved.manifest;
    info.tag = mr->resolved.tag;
    info.node = conns[mr->node]->address();
    if (mr->resolved.yank && mr->resolved.yank->yanked()) {
      info.state = "yanked";
      info.reason = "yanked by its publisher: " + OneLine(mr->resolved.yank->reason());
    }
  } else if (absl::IsFailedPrecondition(mr.status()) &&
             mr.status().message().find("withheld") != std::string_view::npos) {
    // Shown as the node holds it, unverified, with why it is not served.
    auto w = ResolveVerified(*conns[0], nullptr, ref_text, /*include_withheld=*/true);
    if (!w.ok()) return Fail(mr.status());
    info.state = "withheld";
    info.reason = std::string(mr.status().message());
    info.digest = w->digest;
    info.envelope = w->envelope;
    info.manifest = w->manifest;
    info.node = conns[0]->address();
  } else if (absl::IsNotFound(mr.status())) {
    auto p = FindPending(conns, *ref);
    if (absl::IsNotFound(p.status())) return Fail(mr.status());
    if (!p.ok()) return Fail(p.status());
    info = std::move(*p);
  } else {
    return Fail(mr.status());
  }
  const cairn::v1::Manifest& m = info.manifest;
  // The tags pointing at it, and who signed it.
  json tags = json::array();
  std::vector<std::string> tag_text;
  if (auto listed = ListNames(*conns[0], m.name()); listed.ok()) {
    for (const auto& e : listed->entries()) {
      if (e.name() != m.name()) continue;
      for (const auto& t : e.tags()) {
        if (t.manifest_digest() != info.digest) continue;
        tags.push_back(
            {{"tag", t.tag()}, {"version", t.version()}, {"expires_unix", t.expires_unix()}});
        tag_text.push_back(
            StrCat(t.tag(), " (v", t.version(), ", expires ", IsoDate(t.expires_unix()), ")"));
      }
    }
  }
  json signers = json::array();
  std::vector<std::string> signer_text;
  cairn::v1::Envelope env;
  if (env.ParseFromString(info.envelope)) {
    for (const auto& s : env.signatures()) {
      bool delegated = tr && tr->IsDelegated(s.key_id(), NamespaceOf(m.name()));
      signers.push_back({{"key_id", s.key_id()}, {"delegated", delegated}});
      signer_text.push_back(
          s.key_id() +
          (tr ? (delegated ? " (delegated for " + std::string(NamespaceOf(m.name())) + ")"
                           : " (not delegated)")
              : ""));
    }
  }
  uint64_t bytes = 0;
  json files = json::array(), parents = json::array();
  for (const auto& f : m.files()) {
    bytes += f.size();
    files.push_back({{"path", f.path()}, {"size", f.size()}, {"sha256", f.sha256()}});
  }
  for (const auto& p : m.parents()) {
    parents.push_back({{"name", p.name()},
                       {"manifest", p.manifest_digest()},
                       {"relation", RelationName(p.relation())}});
  }
  const bool served = info.state == "published" || info.state == "yanked";
  const bool verified = tr != nullptr && served;
  if (ctx->as_json) {
    PrintJson({{"manifest", info.digest},
               {"name", m.name()},
               {"version", m.version()},
               {"state", info.state},
               {"reason", info.reason},
               {"bytes", bytes},
               {"files", files},
               {"license", m.license()},
               {"parents", parents},
               {"tags", tags},
               {"signers", signers},
               {"signatures", info.signatures},
               {"signatures_needed", info.signatures_needed},
               {"published_unix", m.created_unix()},
               {"node", info.node},
               {"verified", verified},
               {"tag_version", info.tag ? info.tag->version() : 0}});
    return 0;
  }
  std::printf("%s %s (%s; %s)\n", m.name().c_str(), m.version().c_str(), info.state.c_str(),
              verified  ? "signature verified"
              : !served ? "not verified: not served"
                        : "not verified: no --trust");
  std::printf("  manifest   %s\n", info.digest.c_str());
  if (!info.reason.empty()) std::printf("  why        %s\n", info.reason.c_str());
  std::printf("  size       %s in %d files\n", Progress::Bytes(bytes).c_str(), m.files_size());
  std::printf("  license    %s\n", m.license().empty() ? "(none given)" : m.license().c_str());
  std::printf("  published  %s\n", IsoDate(m.created_unix()).c_str());
  std::printf("  signers    %s\n", StrJoin(signer_text, ", ").c_str());
  std::printf("  tags       %s\n", tag_text.empty() ? "(none)" : StrJoin(tag_text, ", ").c_str());
  for (const auto& p : m.parents()) {
    std::printf("  parent     %s@%s (%s)\n", p.name().c_str(), p.manifest_digest().c_str(),
                RelationName(p.relation()).c_str());
  }
  std::printf("  node       %s\n  files\n", info.node.c_str());
  for (const auto& f : m.files()) {
    std::printf("  %12lu  %s\n", static_cast<unsigned long>(f.size()), f.path().c_str());
  }
  return 0;
}

int RunLs(CliContext* ctx, Connection& node, size_t nodes, const std::string& pattern,
          bool pending) {
  if (nodes > 1) {
    std::fprintf(stderr, "cairn: listing %s (the first reachable of %zu nodes)\n",
                 node.address().c_str(), nodes);
  }
  // The node lists by prefix; an exact name or a glob is filtered here.
  std::string prefix = pattern.substr(0, pattern.find_first_of("*?["));
  auto listed = ListNames(node, prefix, pending);
  if (!listed.ok()) return Fail(listed.status());
  json out = json::array();
  for (const auto& e : listed->entries()) {
    if (!NameMatches(pattern, e.name())) continue;
    json rel = json::array(), tags = json::array(), pend = json::array();
    for (const auto& r : e.releases()) {
      rel.push_back({{"version", r.version()},
                     {"manifest", r.manifest_digest()},
                     {"bytes", r.bytes()},
                     {"files", r.files()},
                     {"yanked", r.yanked()}});
      if (r.yanked()) rel.back()["yank_reason"] = r.yank_reason();
    }
    for (const auto& t : e.tags()) {
      tags.push_back({{"tag", t.tag()},
                      {"version", t.version()},
                      {"manifest", t.manifest_digest()},
                      {"expires_unix", t.expires_unix()}});
    }
    for (const auto& p : e.pending()) {
      pend.push_back({{"version", p.version()},
                      {"manifest", p.manifest_digest()},
                      {"bytes", p.bytes()},
                      {"files", p.files()},
                      {"tag", p.tag()},
                      {"signatures", p.signatures()},
                      {"signatures_needed", p.signatures_needed()},
                      {"expires_unix", p.expires_unix()}});
    }
    json entry = {{"name", e.name()}, {"releases", rel}, {"tags", tags}};
    if (pending) entry["pending"] = pend;
    out.push_back(entry);
    if (ctx->as_json) continue;
    std::printf("%s\n", e.name().c_str());
    for (const auto& r : e.releases()) {
      std::printf("  %-16s %s  %s%s\n", r.version().c_str(), r.manifest_digest().c_str(),
                  Progress::Bytes(r.bytes()).c_str(),
                  r.yanked() ? ("  YANKED: " + OneLine(r.yank_reason())).c_str() : "");
    }
    for (const auto& t : e.tags()) {
      std::printf("  :%-15s -> %s (v%lu, expires %s)\n", t.tag().c_str(),
                  t.manifest_digest().c_str(), static_cast<unsigned long>(t.version()),
                  IsoDate(t.expires_unix()).c_str());
    }
    for (const auto& p : e.pending()) {
      std::printf("  %-16s %s  %s  PENDING %u of %u signatures, until %s%s\n", p.version().c_str(),
                  p.manifest_digest().c_str(), Progress::Bytes(p.bytes()).c_str(), p.signatures(),
                  p.signatures_needed(), IsoDate(p.expires_unix()).c_str(),
                  p.tag().empty() ? "" : (" (tag " + p.tag() + ")").c_str());
    }
  }
  if (ctx->as_json) PrintJson(out);
  if (out.empty() && !pattern.empty()) {
    // An exact name that is not there is an error (as `ls FILE` is); a
    // pattern that matches nothing is only said.
    const bool exact = pattern.find_first_of("*?[") == std::string::npos && pattern.back() != '/';
    std::fprintf(stderr, "cairn: %s %s on %s\n", exact ? "no model" : "no model matches",
                 pattern.c_str(), node.address().c_str());
    return exact ? 1 : 0;
  }
  return 0;
}

}  // namespace cairn::client
