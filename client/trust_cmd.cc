#include "trust_cmd.h"

#include <unistd.h>

#include <algorithm>

#include "cairn/clock.h"
#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "cli_util.h"
#include "trust_admin.h"

namespace cairn::client {

using json = nlohmann::json;
using cairn::v1::TrustRoot;

json TrustJson(const TrustRootView& v) {
  const auto& r = v.root();
  json j;
  j["digest"] = v.digest();
  j["version"] = r.version();
  j["expires_unix"] = r.expires_unix();
  j["expired"] = r.expires_unix() <= SystemNowUnix();
  j["root_keys"] = std::vector<std::string>(r.root_key_ids().begin(), r.root_key_ids().end());
  j["root_threshold"] = r.root_threshold();
  json dels = json::array();
  for (const auto& d : r.delegations()) {
    dels.push_back({{"namespace", d.namespace_()},
                    {"keys", std::vector<std::string>(d.key_ids().begin(), d.key_ids().end())},
                    {"threshold", d.threshold()}});
  }
  j["delegations"] = dels;
  j["revoked"] = std::vector<std::string>(r.revoked_key_ids().begin(), r.revoked_key_ids().end());
  return j;
}

namespace {

json SignaturesJson(const SuccessorSignatures& s) {
  return {{"previous_root_keys", {{"have", s.prev_have}, {"need", s.prev_need}}},
          {"own_root_keys", {{"have", s.next_have}, {"need", s.next_need}}}};
}

std::vector<const SigningKey*> Ptrs(const std::vector<std::unique_ptr<SigningKey>>& keys) {
  std::vector<const SigningKey*> out;
  for (const auto& k : keys) out.push_back(k.get());
  return out;
}

// Reports a root change: written to T, or pending co-signatures.
int Report(const RootChange& c, const std::string& trust_path, const std::string& what,
           bool as_json) {
  if (as_json) {
    json j = {{"version", c.version},
              {"pending", c.pending},
              {"written", c.written},
              {"signatures", SignaturesJson(c.signatures)}};
    if (!c.pending) {
      auto v = TrustRootView::FromEnvelopeBytes(c.envelope, kIgnoreExpiry);
      if (v.ok()) j["trust"] = TrustJson(*v);
    }
    PrintJson(j);
    return 0;
  }
  if (c.pending) {
    std::printf(
        "trust root v%lu (%s) needs more signatures: %s\nwritten to %s; each co-signer runs: "
        "cairn trust sign --trust %s --key ROOTKEY (with copies of %s and %s)\n",
        static_cast<unsigned long>(c.version), what.c_str(), c.signatures.ToString().c_str(),
        c.written.c_str(), trust_path.c_str(), trust_path.c_str(), c.written.c_str());
  } else {
    std::printf(
        "trust root v%lu written to %s (v%lu kept as %s.v%lu): %s\nnext: cairn trust push "
        "--trust %s --node HOST:PORT, so nodes and their clients get it\n",
        static_cast<unsigned long>(c.version), c.written.c_str(),
        static_cast<unsigned long>(c.version - 1), trust_path.c_str(),
        static_cast<unsigned long>(c.version - 1), what.c_str(), trust_path.c_str());
  }
  return 0;
}

// The key id of `spec`: a public key file, or a key id as printed by keygen.
absl::StatusOr<std::string> KeyIdOfSpec(const std::string& spec) {
  if (::access(spec.c_str(), F_OK) == 0) {
    CAIRN_ASSIGN_OR_RETURN(auto k, SigningKey::LoadPublic(spec));
    return k->key_id();
  }
  if (spec.size() == 32 && std::all_of(spec.begin(), spec.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return spec;
  }
  return absl::InvalidArgumentError("'" + spec +
                                    "' is neither a public key file nor a 32-hex-digit key id");
}

void RemoveId(google::protobuf::RepeatedPtrField<std::string>* ids, const std::string& id) {
  ids->erase(std::remove(ids->begin(), ids->end(), id), ids->end());
}

bool HasId(const google::protobuf::RepeatedPtrField<std::string>& ids, const std::string& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

TrustCommands::TrustCommands(CLI::App* app, bool* as_json,
                             const std::function<void(CLI::App*)>& add_node,
                             const std::string* default_trust, const std::string* config_path)
    : as_json_(as_json), default_trust_(default_trust), config_path_(config_path) {
  auto* trust = app->add_subcommand("trust", "trust-root administration");
  trust->require_subcommand(1);
  auto json_flag = [&](CLI::App* c) {
    c->add_flag("--json", *as_json_, "machine-readable output");
  };
  auto signing_keys = [&](CLI::App* c, const char* help) {
    c->add_option("--key", keys_, help)->required();
  };
  auto trust_file = [&](CLI::App* c) {
    c->add_option("--trust", trust_,
                  "trust file, its older versions kept beside it (default: CAIRN_TRUST or "
                  "trust in config.toml)");
  };

  init_ = trust->add_subcommand("init", "make a version-1 trust root");
  signing_keys(init_, "root private key that signs it (repeat for several)");
  init_->add_option("--root-key", root_pubs_,
                    "another root key, public only (KEY.pub); it can sign later versions");
  init_->add_option("--root-threshold", root_threshold_,
                    "root signatures needed for each new version (default 1)");
  init_->add_option("--out", out_, "trust file to write")->required();
  init_->add_option("--expires-days", days_, "validity in days (default 365)");
  json_flag(init_);

  delegate_ = trust->add_subcommand("delegate", "let publisher keys sign releases of a namespace");
  trust_file(delegate_);
  signing_keys(delegate_, "root private key (repeat until the root threshold is met)");
  delegate_->add_option("--namespace", ns_, "namespace")->required();
  delegate_->add_option("--publisher", publishers_, "publisher public key (KEY.pub); repeatable")
      ->required();
  delegate_->add_option("--threshold", threshold_,
                        "signatures needed for the namespace's releases (default 1)");
  delegate_->add_option("--expires-days", days_, "also renew: validity from now, in days");
  json_flag(delegate_);

  revoke_ = trust->add_subcommand(
      "revoke", "revoke publisher keys (everywhere), or a namespace's delegation");
  trust_file(revoke_);
  signing_keys(revoke_, "root private key (repeat until the root threshold is met)");
  revoke_->add_option("--publisher", publishers_,
                      "public key file or key id to revoke; repeatable");
  revoke_->add_option("--namespace", ns_,
                      "with --publisher: only remove it from this namespace; alone: remove the "
                      "namespace's delegation");
  revoke_->add_option("--replacement", replacements_,
                      "with --publisher: delegate this public key (KEY.pub) in its place in "
                      "every namespace the revoked keys served, in the same change; repeatable");
  revoke_->add_flag("--allow-empty-namespace", allow_empty_,
                    "with --publisher: let namespaces left without any key be dropped (all "
                    "their releases are withheld)");
  revoke_->add_option("--expires-days", days_, "also renew: validity from now, in days");
  json_flag(revoke_);

  rotate_ = trust->add_subcommand("rotate", "change the root keys, their threshold, or renew");
  trust_file(rotate_);
  signing_keys(rotate_, "root private key, old or new (repeat until both thresholds are met)");
  rotate_->add_option("--add-root", root_pubs_, "new root public key (KEY.pub); repeatable");
  rotate_->add_option("--remove-root", remove_roots_, "root key (file or key id) to retire");
  rotate_->add_option("--root-threshold", root_threshold_, "root signatures needed from now on");
  rotate_->add_option("--expires-days", days_, "validity from now, in days (default 365)");
  json_flag(rotate_);

  sign_ = trust->add_subcommand("sign", "co-sign the pending trust root (TRUST.pending)");
  trust_file(sign_);
  signing_keys(sign_, "root private key; repeatable");
  json_flag(sign_);

  show_ = trust->add_subcommand("show", "print a trust root (and any pending one)");
  show_->add_option("TRUST", show_path_, "trust file (the same as --trust)");
  trust_file(show_);
  json_flag(show_);

  push_ = trust->add_subcommand("push", "give nodes the trust file's newer roots");
  trust_file(push_);
  add_node(push_);
  json_flag(push_);

  update_ = trust->add_subcommand("update",
                                  "walk the trust file forward to the newest root the nodes hold");
  trust_file(update_);
  add_node(update_);
  json_flag(update_);
}

bool TrustCommands::parsed() const {
  for (CLI::App* c : {init_, delegate_, revoke_, rotate_, sign_, show_, push_, update_}) {
    if (c->parsed()) return true;
  }
  return false;
}

int TrustCommands::Run(
    const std::function<absl::StatusOr<std::vector<std::unique_ptr<Connection>>>()>& connect) {
  const bool as_json = *as_json_;
  if (days_ < 0 || days_ > 36500) {
    return Fail(absl::InvalidArgumentError("--expires-days must be 1..36500"));
  }
  auto expires = [&](int default_days) {
    return SystemNowUnix() + int64_t{days_ > 0 ? days_ : default_days} * 86400;
  };

  // Every command but init works on an existing file: --trust, else the
  // positional file of show, else CAIRN_TRUST or the config's.
  if (!init_->parsed()) {
    if (trust_.empty()) trust_ = show_path_;
    if (trust_.empty() && default_trust_) trust_ = *default_trust_;
    if (trust_.empty()) {
      return Fail(absl::InvalidArgumentError(
          "no trust root: pass --trust FILE, set CAIRN_TRUST, or set trust in " +
          (config_path_ ? *config_path_ : std::string("the config"))));
    }
    show_path_ = trust_;
  }

  if (init_->parsed()) {
    auto keys = LoadPrivateKeys(keys_);
    if (!keys.ok()) return Fail(keys.status());
    if (::access(out_.c_str(), F_OK) == 0) {
      return Fail(absl::AlreadyExistsError(out_ + " already exists; not overwriting a trust root"));
    }
    TrustRoot root;
    root.set_version(1);
    root.set_expires_unix(expires(365));
    for (const auto& k : *keys) {
      AddKey(&root, *k);
      root.add_root_key_ids(k->key_id());
    }
    for (const auto& p : root_pubs_) {
      auto k = SigningKey::LoadPublic(p);
      if (!k.ok()) return Fail(k.status());
      if (HasId(root.root_key_ids(), (*k)->key_id())) continue;
      AddKey(&root, **k);
      root.add_root_key_ids((*k)->key_id());
    }
    unsigned t = root_threshold_ == 0 ? 1 : root_threshold_;
    if (t > static_cast<unsigned>(root.root_key_ids_size())) {
      return Fail(absl::InvalidArgumentError(
          StrCat("--root-threshold ", t, " exceeds the ", root.root_key_ids_size(), " root keys")));
    }
    if (t > keys->size()) {
      return Fail(absl::InvalidArgumentError(StrCat("version 1 must be signed by ", t,
                                                    " root keys; pass that many --key (",
                                                    keys->size(), " given)")));
    }
    root.set_root_threshold(t);
    auto bytes = SignTrustRoot(root, Ptrs(*keys));
    if (!bytes.ok()) return Fail(bytes.status());
    auto v = TrustRootView::FromEnvelopeBytes(*bytes, SystemNowUnix());
    if (!v.ok()) return Fail(v.status());
    absl::Status st = WriteFileAtomic(out_, *bytes);
    if (!st.ok()) return Fail(st);
    if (as_json) {
      PrintJson(TrustJson(*v));
    } else {
      std::printf("trust root v1 %s (root keys %s, threshold %u)\n", v->digest().c_str(),
                  StrJoin(root.root_key_ids(), ", ").c_str(), t);
    }
    return 0;
  }

  if (show_->parsed()) {
    auto v = LoadTrustFileForAdmin(show_path_);
    if (!v.ok()) return Fail(v.status());
    auto pending = PendingRoot(show_path_);
    json j = TrustJson(*v);
    if (pending.ok()) {
      j["pending"] = {{"version", pending->version},
                      {"file", pending->written},
                      {"signatures", SignaturesJson(pending->signatures)}};
    }
    if (as_json) {
      PrintJson(j);
      return 0;
    }
    const auto& r = v->root();
    std::printf("trust root v%lu  %s\nexpires   %s%s\nroot keys %s (threshold %u)\n",
                static_cast<unsigned long>(r.version()), v->digest().c_str(),
                IsoDate(r.expires_unix()).c_str(),
                r.expires_unix() <= SystemNowUnix() ? "  EXPIRED: run cairn trust update" : "",
                StrJoin(r.root_key_ids(), ", ").c_str(), r.root_threshold());
    for (const auto& d : r.delegations()) {
      std::printf("namespace %s: %s (threshold %u)\n", d.namespace_().c_str(),
                  StrJoin(d.key_ids(), ", ").c_str(), d.threshold());
    }
    if (r.revoked_key_ids_size() > 0) {
      std::printf("revoked   %s\n", StrJoin(r.revoked_key_ids(), ", ").c_str());
    }
    if (pending.ok()) {
      std::printf("pending   v%lu in %s: %s\n", static_cast<unsigned long>(pending->version),
                  pending->written.c_str(), pending->signatures.ToString().c_str());
    }
    return 0;
  }

  if (push_->parsed() || update_->parsed()) {
    auto conns = connect();
    if (!conns.ok()) return Fail(conns.status());
    if (push_->parsed()) {
      json out = json::array();
      int failed = 0;
      for (auto& c : *conns) {
        auto r = PushTrust(*c, trust_);
        if (!r.ok()) {
          ++failed;
          std::fprintf(stderr, "cairn: error: %s\n", std::string(r.status().message()).c_str());
          out.push_back({{"node", c->address()}, {"error", r.status().message()}});
          continue;
        }
        out.push_back(
            {{"node", c->address()}, {"version", r->version()}, {"advanced", r->advanced()}});
        if (!as_json) {
          std::printf("%s: trust root v%lu (%u new version(s) adopted)\n", c->address().c_str(),
                      static_cast<unsigned long>(r->version()), r->advanced());
        }
      }
      if (as_json) PrintJson(out);
      return failed == 0 ? 0 : 1;
    }
    std::vector<Connection*> raw;
    for (auto& c : *conns) raw.push_back(c.get());
    auto r = UpdateTrustFile(raw, trust_);
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      PrintJson({{"from", r->from}, {"to", r->to}, {"source", r->source}});
    } else if (r->to == r->from) {
      std::printf("trust root v%lu is current\n", static_cast<unsigned long>(r->from));
    } else {
      std::printf("trust root v%lu -> v%lu (from %s; each version verified by the one before)\n",
                  static_cast<unsigned long>(r->from), static_cast<unsigned long>(r->to),
                  r->source.c_str());
    }
    return 0;
  }

  // The rest make (or finish) root version N+1 of --trust.
  auto keys = LoadPrivateKeys(keys_);
  if (!keys.ok()) return Fail(keys.status());
  if (sign_->parsed()) {
    auto c = CoSignPendingRoot(trust_, Ptrs(*keys));
    if (!c.ok()) return Fail(c.status());
    return Report(*c, trust_, "co-signed", as_json);
  }
  auto cur = LoadTrustFileForAdmin(trust_);
  if (!cur.ok()) return Fail(cur.status());
  TrustRoot next = cur->root();
  next.set_version(next.version() + 1);
  std::string what;

  if (delegate_->parsed()) {
    if (!ValidateName(ns_ + "/x").ok()) {
      return Fail(absl::InvalidArgumentError("invalid namespace '" + ns_ + "'"));
    }
    cairn::v1::Delegation* d = nullptr;
    for (auto& x : *next.mutable_delegations()) {
      if (x.namespace_() == ns_) d = &x;
    }
    if (d == nullptr) {
      d = next.add_delegations();
      d->set_namespace_(ns_);
    }
    std::vector<std::string> added;
    for (const auto& p : publishers_) {
      auto pub = SigningKey::LoadPublic(p);
      if (!pub.ok()) return Fail(pub.status());
      if (HasId(next.revoked_key_ids(), (*pub)->key_id())) {
        return Fail(absl::FailedPreconditionError("key " + (*pub)->key_id() +
                                                  " is revoked; make a new key (cairn keygen)"));
      }
      AddKey(&next, **pub);
      if (!HasId(d->key_ids(), (*pub)->key_id())) d->add_key_ids((*pub)->key_id());
      added.push_back((*pub)->key_id());
    }
    if (threshold_ == 0 || threshold_ > static_cast<unsigned>(d->key_ids_size())) {
      return Fail(absl::InvalidArgumentError(
          StrCat("--threshold must be 1..", d->key_ids_size(), " (the namespace's keys)")));
    }
    d->set_threshold(threshold_);
    what = StrCat("namespace ", ns_, " delegated to ", StrJoin(added, ", "), " (threshold ",
                  threshold_, ")");
  } else if (revoke_->parsed()) {
    if (publishers_.empty() && ns_.empty()) {
      return Fail(absl::InvalidArgumentError("revoke what? pass --publisher and/or --namespace"));
    }
    if (publishers_.empty()) {
      auto& dels = *next.mutable_delegations();
      auto it = std::find_if(dels.begin(), dels.end(),
                             [&](const auto& d) { return d.namespace_() == ns_; });
      if (it == dels.end()) {
        return Fail(absl::NotFoundError("namespace '" + ns_ + "' has no delegation to revoke"));
      }
      dels.erase(it);
      what = "delegation of namespace " + ns_ + " revoked";
    } else {
      std::vector<std::string> ids;
      for (const auto& p : publishers_) {
        auto id = KeyIdOfSpec(p);
        if (!id.ok()) return Fail(id.status());
        if (HasId(next.root_key_ids(), *id)) {
          return Fail(absl::InvalidArgumentError(
              "key " + *id + " is a root key: retire it with cairn trust rotate --remove-root"));
        }
        ids.push_back(*id);
      }
      std::vector<std::unique_ptr<SigningKey>> repl;
      for (const auto& p : replacements_) {
        auto pub = SigningKey::LoadPublic(p);
        if (!pub.ok()) return Fail(pub.status());
        if (HasId(next.revoked_key_ids(), (*pub)->key_id()) ||
            std::find(ids.begin(), ids.end(), (*pub)->key_id()) != ids.end()) {
          return Fail(absl::InvalidArgumentError("replacement key " + (*pub)->key_id() +
                                                 " is revoked; make a new key (cairn keygen)"));
        }
        repl.push_back(std::move(*pub));
      }
      std::vector<std::string> emptied;
      for (auto& d : *next.mutable_delegations()) {
        if (!ns_.empty() && d.namespace_() != ns_) continue;
        bool served = false;
        for (const auto& id : ids) {
          served |= HasId(d.key_ids(), id);
          RemoveId(d.mutable_key_ids(), id);
        }
        if (!served) continue;
        for (const auto& k : repl) {
          AddKey(&next, *k);
          if (!HasId(d.key_ids(), k->key_id())) d.add_key_ids(k->key_id());
        }
        if (d.key_ids_size() == 0) emptied.push_back(d.namespace_());
      }
      // Revoking a namespace's only key would silently withhold the whole
      // namespace ("namespace has no delegation"): only on request.
      if (!emptied.empty() && !allow_empty_) {
        return Fail(absl::FailedPreconditionError(
            StrCat("namespace(s) ", StrJoin(emptied, ", "),
                   " would be left without a publisher key, and everything in them withheld: "
                   "pass --replacement NEW.key.pub to delegate a new key in the same change, or "
                   "--allow-empty-namespace to drop them")));
      }
      bool found = false;
      for (const auto& id : ids) {
        for (const auto& d : cur->root().delegations()) {
          found |= (ns_.empty() || d.namespace_() == ns_) && HasId(d.key_ids(), id);
        }
        if (ns_.empty() && !HasId(next.revoked_key_ids(), id)) next.add_revoked_key_ids(id);
      }
      if (ns_.empty() && std::all_of(ids.begin(), ids.end(), [&](const std::string& id) {
            return HasId(cur->root().revoked_key_ids(), id);
          })) {
        return Fail(absl::AlreadyExistsError("already revoked in v" +
                                             std::to_string(cur->root().version())));
      }
      if (!found && !ns_.empty()) {
        return Fail(absl::NotFoundError("none of the keys is delegated for namespace " + ns_));
      }
      // A namespace left with too few keys for its threshold would be
      // unpublishable by accident: say so rather than lower the threshold.
      auto& dels = *next.mutable_delegations();
      for (const auto& d : dels) {
        if (d.key_ids_size() > 0 && static_cast<int>(d.threshold()) > d.key_ids_size()) {
          return Fail(absl::FailedPreconditionError(
              StrCat("namespace ", d.namespace_(), " would keep ", d.key_ids_size(),
                     " key(s) for threshold ", d.threshold(),
                     ": delegate a replacement key first (cairn trust delegate)")));
        }
      }
      dels.erase(std::remove_if(dels.begin(), dels.end(),
                                [](const auto& d) { return d.key_ids_size() == 0; }),
                 dels.end());
      what = ns_.empty() ? StrCat("key(s) ", StrJoin(ids, ", "), " revoked")
                         : StrCat("key(s) ", StrJoin(ids, ", "), " removed from namespace ", ns_);
    }
  } else if (rotate_->parsed()) {
    for (const auto& p : root_pubs_) {
      auto k = SigningKey::LoadPublic(p);
      if (!k.ok()) return Fail(k.status());
      if (HasId(next.revoked_key_ids(), (*k)->key_id())) {
        return Fail(absl::FailedPreconditionError("key " + (*k)->key_id() + " is revoked"));
      }
      AddKey(&next, **k);
      if (!HasId(next.root_key_ids(), (*k)->key_id())) next.add_root_key_ids((*k)->key_id());
    }
    for (const auto& spec : remove_roots_) {
      auto id = KeyIdOfSpec(spec);
      if (!id.ok()) return Fail(id.status());
      if (!HasId(next.root_key_ids(), *id)) {
        return Fail(absl::NotFoundError("key " + *id + " is not a root key of v" +
                                        std::to_string(cur->root().version())));
      }
      RemoveId(next.mutable_root_key_ids(), *id);
    }
    if (root_threshold_ > 0) next.set_root_threshold(root_threshold_);
    if (next.root_key_ids_size() == 0) {
      return Fail(absl::InvalidArgumentError("a trust root needs at least one root key"));
    }
    if (next.root_threshold() > static_cast<uint32_t>(next.root_key_ids_size())) {
      return Fail(absl::InvalidArgumentError(StrCat("root threshold ", next.root_threshold(),
                                                    " exceeds the ", next.root_key_ids_size(),
                                                    " root keys: pass --root-threshold")));
    }
    next.set_expires_unix(expires(365));
    what = StrCat("root keys ", StrJoin(next.root_key_ids(), ", "), " (threshold ",
                  next.root_threshold(), ")");
  }
  if (days_ > 0) next.set_expires_unix(expires(365));
  // Keys no root, delegation or revocation names any more are dropped.
  auto& ks = *next.mutable_keys();
  ks.erase(std::remove_if(ks.begin(), ks.end(),
                          [&](const cairn::v1::PublicKey& k) {
                            if (HasId(next.root_key_ids(), k.key_id())) return false;
                            for (const auto& d : next.delegations()) {
                              if (HasId(d.key_ids(), k.key_id())) return false;
                            }
                            return true;
                          }),
           ks.end());
  auto c = ProposeRoot(trust_, *cur, std::move(next), Ptrs(*keys));
  if (!c.ok()) return Fail(c.status());
  return Report(*c, trust_, what, as_json);
}

}  // namespace cairn::client
