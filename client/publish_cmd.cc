#include "publish_cmd.h"

#include <cstdio>
#include <optional>

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cli_util.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "trust_admin.h"

namespace cairn::client {

using json = nlohmann::json;

PublishCommands::PublishCommands(CLI::App* app, CliContext* ctx) : ctx_(ctx) {
  publish_ = app->add_subcommand("publish", "publish a directory as a signed release");
  publish_->add_option("DIR", po_.dir, "directory to publish")->required();
  publish_->add_option("--name", po_.name, "NS/MODEL")->required();
  publish_->add_option("--version", po_.version, "release version (immutable)")->required();
  publish_->add_option("--key", po_.key_paths, "publisher private key (repeat for co-signers)")
      ->required();
  publish_->add_option("--tag", po_.tag,
                       "tag to point at the release (default latest; '' for none)");
  publish_->add_option("--tag-version", tag_version_, "tag record version (default: node's + 1)");
  publish_
      ->add_option("--tag-expires-days", po_.tag_expires_days,
                   "days until the tag expires and clients refuse it (default 90; 1-3650)")
      ->check(CLI::Range(1, 3650));
  publish_->add_option("--base", po_.base, "parent release NS/MODEL@sha256:... (or NS/MODEL:TAG)");
  publish_->add_option("--relation", po_.relation, "finetune|quantization|adapter|merge|other");
  publish_->add_option("--license", po_.license, "license identifier (e.g. apache-2.0)");
  publish_->add_option("--avg-chunk", avg_chunk_, "average chunk size in bytes (default 65536)");
  ctx_->AddNode(publish_);
  ctx_->AddJson(publish_);

  // import-hf: the same release options over a Hub download.
  import_hf_ = app->add_subcommand(
      "import-hf",
      "publish a Hugging Face Hub download (a snapshot folder, a cache folder "
      "models--ORG--NAME or one of its snapshots/SHA) as a signed release, with the Hub's file "
      "names and commit id");
  import_hf_->add_option("DIR", po_.dir, "snapshot or cache folder")->required();
  import_hf_->add_option("--name", po_.name, "NS/MODEL")->required();
  import_hf_->add_option("--version", po_.version, "release version (immutable)")->required();
  import_hf_->add_option("--key", po_.key_paths, "publisher private key (repeat for co-signers)")
      ->required();
  import_hf_->add_option(
      "--revision", hf_revision_,
      "with a cache folder: the ref (refs/REV) or commit to import (default main)");
  import_hf_->add_option("--commit", hf_commit_,
                         "the Hub commit id to keep (default: the snapshot folder's name)");
  import_hf_->add_option("--tag", po_.tag, "tag to point at the release (default latest)");
  import_hf_->add_option("--license", po_.license, "license identifier (e.g. apache-2.0)");
  ctx_->AddNode(import_hf_);
  ctx_->AddJson(import_hf_);

  // sign
  sign_ = app->add_subcommand("sign", "co-sign a release waiting for signatures on a node");
  sign_->add_option("REF", sign_ref_, "NS/MODEL@sha256:... (as printed by cairn publish)")
      ->required();
  sign_->add_option("--key", sign_keys_, "publisher private key; repeatable")->required();
  ctx_->AddNode(sign_);
  ctx_->AddTrust(sign_);
  ctx_->AddJson(sign_);

  // renew
  renew_cmd_ = app->add_subcommand(
      "renew", "re-sign a tag with a later expiry when it expires soon (run it daily from cron)");
  renew_cmd_->add_option("REF", renew_.ref, "NS/MODEL:TAG")->required();
  renew_cmd_->add_option("--key", renew_.key_paths, "publisher private key; repeatable")
      ->required();
  renew_cmd_
      ->add_option("--expires-days", renew_.expires_days,
                   "days the renewed tag lives (default 90; 1-3650)")
      ->check(CLI::Range(1, 3650));
  renew_cmd_
      ->add_option("--within-days", renew_.within_days,
                   "renew only if it expires within this many days (default 14; 0: only once "
                   "expired)")
      ->check(CLI::Range(0, 3650));
  ctx_->AddNode(renew_cmd_);
  ctx_->AddJson(renew_cmd_);

  // tag
  tag_cmd_ = app->add_subcommand(
      "tag", "point a tag at a release the node holds (signed; no file is uploaded)");
  tag_cmd_
      ->add_option("RELEASE", tag_.release, "NS/MODEL@sha256:..., NS/MODEL@VERSION or NS/MODEL:TAG")
      ->required();
  tag_cmd_->add_option("TAG", tag_.tag, "the tag to set, e.g. latest or stable")->required();
  tag_cmd_->add_option("--key", tag_.key_paths, "publisher private key; repeatable")->required();
  tag_cmd_
      ->add_option("--expires-days", tag_.expires_days, "days the tag lives (default 90; 1-3650)")
      ->check(CLI::Range(1, 3650));
  tag_cmd_->add_option("--tag-version", move_tag_version_,
                       "the tag record's version (default: the node's current + 1)");
  ctx_->AddNode(tag_cmd_);
  ctx_->AddTrust(tag_cmd_);
  ctx_->AddJson(tag_cmd_);

  // yank
  yank_cmd_ = app->add_subcommand(
      "yank",
      "yank a release: no tag resolves to it any more; by digest or version it is still pulled, "
      "with a warning (signed; travels to every node like a tag)");
  yank_cmd_
      ->add_option("RELEASE", yank_.release,
                   "NS/MODEL@sha256:..., NS/MODEL@VERSION or NS/MODEL:TAG")
      ->required();
  yank_cmd_->add_option("--reason", yank_.reason,
                        "why, in one line (shown to everyone who pulls it; required to yank)");
  yank_cmd_->add_flag("--undo", yank_.undo, "withdraw the yank");
  yank_cmd_->add_option("--key", yank_.key_paths, "publisher private key; repeatable")->required();
  ctx_->AddNode(yank_cmd_);
  ctx_->AddTrust(yank_cmd_);
  ctx_->AddJson(yank_cmd_);
}

bool PublishCommands::parsed() const {
  return publish_->parsed() || import_hf_->parsed() || sign_->parsed() || renew_cmd_->parsed() ||
         tag_cmd_->parsed() || yank_cmd_->parsed();
}

int PublishCommands::Run() {
  if (import_hf_->parsed()) {
    if (absl::Status s = PrepareHfImport(po_.dir, hf_revision_, hf_commit_, &po_); !s.ok()) {
      return Fail(s);
    }
  }
  if (publish_->parsed() || import_hf_->parsed()) {
    if (tag_version_ > 0) po_.tag_version = tag_version_;
    if (avg_chunk_ > 0) {
      if (avg_chunk_ < 1024 || avg_chunk_ > 256 * 1024 || (avg_chunk_ & (avg_chunk_ - 1)) != 0) {
        return Fail(
            absl::InvalidArgumentError("--avg-chunk must be a power of two in 1 KiB..256 KiB"));
      }
      po_.chunker = ChunkerParams::ForAverage(avg_chunk_);
    }
    po_.progress = ctx_->tty();
    // Several nodes: the same signed release goes to each, in the order
    // given (each uploads only the chunks it lacks). Every node must be
    // reachable before anything is uploaded.
    auto conns = ctx_->ConnectEvery();
    if (!conns.ok()) return Fail(conns.status());
    std::vector<PublishResult> results;
    for (auto& conn : *conns) {
      if (conns->size() > 1 && !ctx_->as_json) {
        std::fprintf(stderr, "cairn: publishing to %s\n", conn->address().c_str());
      }
      auto r = Publish(*conn, po_);
      if (!r.ok()) {
        if (results.empty()) return Fail(r.status());
        return Fail(Annotate(r.status(), StrCat("published to ", results.size(), " of ",
                                                conns->size(), " nodes, then ", conn->address())));
      }
      // The next nodes get byte-identical envelopes.
      po_.created_unix = r->created_unix;
      if (!r->tag.empty()) {
        po_.tag_version = r->tag_version;
        po_.tag_expires_unix = r->tag_expires_unix;
      }
      results.push_back(std::move(*r));
    }
    const PublishResult* r = &results[0];
    json nodes = json::array();
    for (const auto& x : results) {
      nodes.push_back({{"address", x.node},
                       {"bytes_uploaded", x.bytes_uploaded},
                       {"chunks_uploaded", x.chunks_uploaded},
                       {"already_present", x.already_present},
                       {"pending", x.pending},
                       {"seconds", x.seconds}});
    }
    if (ctx_->as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"tag", r->tag},
                 {"tag_version", r->tag_version},
                 {"files", r->files},
                 {"bytes_total", r->bytes_total},
                 {"bytes_uploaded", r->bytes_uploaded},
                 {"chunks_total", r->chunks_total},
                 {"chunks_uploaded", r->chunks_uploaded},
                 {"already_present", r->already_present},
                 {"pending", r->pending},
                 {"signatures", r->signatures},
                 {"signatures_needed", r->signatures_needed},
                 {"nodes", nodes},
                 {"seconds", r->seconds}});
      return 0;
    }
    for (const auto& x : results) {
      r = &x;
      if (r->pending) {
        std::printf(
            "uploaded %s %s %s to %s: pending, %u of %u signatures\n  each co-signer runs: cairn "
            "sign %s@%s --key KEY --node %s\n",
            r->name.c_str(), r->version.c_str(), r->manifest.c_str(), r->node.c_str(),
            r->signatures, r->signatures_needed, r->name.c_str(), r->manifest.c_str(),
            r->node.c_str());
      } else {
        std::printf(
            "published %s %s %s to %s\n  %lu files, %s; uploaded %s in %lu of %lu chunks "
            "(%.1fs)%s\n",
            r->name.c_str(), r->version.c_str(), r->manifest.c_str(), r->node.c_str(),
            static_cast<unsigned long>(r->files), Progress::Bytes(r->bytes_total).c_str(),
            Progress::Bytes(r->bytes_uploaded).c_str(),
            static_cast<unsigned long>(r->chunks_uploaded),
            static_cast<unsigned long>(r->chunks_total), r->seconds,
            r->tag.empty() ? "" : StrCat("\n  tag ", r->tag, " -> v", r->tag_version).c_str());
      }
    }
    return 0;
  }

  if (renew_cmd_->parsed()) {
    auto conn = ctx_->Connect();
    if (!conn.ok()) return Fail(conn.status());
    auto r = RenewTag(**conn, renew_);
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"ref", r->ref},
                 {"manifest", r->manifest},
                 {"renewed", r->renewed},
                 {"old_version", r->old_version},
                 {"new_version", r->new_version},
                 {"old_expires_unix", r->old_expires_unix},
                 {"new_expires_unix", r->new_expires_unix}});
    } else if (r->renewed) {
      std::printf("renewed %s: v%lu -> v%lu, expires %s (was %s)\n", r->ref.c_str(),
                  static_cast<unsigned long>(r->old_version),
                  static_cast<unsigned long>(r->new_version), IsoDate(r->new_expires_unix).c_str(),
                  IsoDate(r->old_expires_unix).c_str());
    } else {
      std::printf("%s: not due (expires %s, v%lu)\n", r->ref.c_str(),
                  IsoDate(r->old_expires_unix).c_str(), static_cast<unsigned long>(r->old_version));
    }
    return 0;
  }

  if (tag_cmd_->parsed()) {
    std::optional<TrustRootView> tr;
    if (!ctx_->settings.trust.empty()) {
      auto t = ctx_->LoadTrust();
      if (!t.ok()) return Fail(t.status());
      tr = std::move(*t);
      tag_.trust = &*tr;
    }
    if (move_tag_version_ > 0) tag_.tag_version = move_tag_version_;
    auto conn = ctx_->Connect();
    if (!conn.ok()) return Fail(conn.status());
    auto r = MoveTag(**conn, tag_);
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"name", r->name},
                 {"tag", r->tag},
                 {"manifest", r->manifest},
                 {"version", r->version},
                 {"previous_manifest", r->old_manifest},
                 {"tag_version", r->tag_version},
                 {"expires_unix", r->expires_unix},
                 {"node", (*conn)->address()}});
    } else {
      std::printf("%s:%s -> %s %s (v%lu, expires %s) on %s%s\n", r->name.c_str(), r->tag.c_str(),
                  r->version.c_str(), r->manifest.c_str(),
                  static_cast<unsigned long>(r->tag_version), IsoDate(r->expires_unix).c_str(),
                  (*conn)->address().c_str(),
                  r->old_manifest.empty() ? "" : ("; was " + r->old_manifest).c_str());
    }
    return 0;
  }

  if (yank_cmd_->parsed()) {
    std::optional<TrustRootView> tr;
    if (!ctx_->settings.trust.empty()) {
      auto t = ctx_->LoadTrust();
      if (!t.ok()) return Fail(t.status());
      tr = std::move(*t);
      yank_.trust = &*tr;
    }
    auto conn = ctx_->Connect();
    if (!conn.ok()) return Fail(conn.status());
    auto r = YankRelease(**conn, yank_);
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"name", r->name},
                 {"version", r->version},
                 {"manifest", r->manifest},
                 {"yanked", r->yanked},
                 {"changed", r->changed},
                 {"yank_version", r->yank_version},
                 {"node", (*conn)->address()}});
    } else if (!r->changed) {
      std::printf("%s %s (%s) %s on %s; nothing to do\n", r->name.c_str(), r->version.c_str(),
                  r->manifest.c_str(), r->yanked ? "is already yanked" : "is not yanked",
                  (*conn)->address().c_str());
    } else {
      std::printf("%s %s %s (%s, yank record v%lu) on %s\n", r->yanked ? "yanked" : "un-yanked",
                  r->name.c_str(), r->version.c_str(), r->manifest.c_str(),
                  static_cast<unsigned long>(r->yank_version), (*conn)->address().c_str());
    }
    return 0;
  }

  if (sign_->parsed()) {
    auto keys = LoadPrivateKeys(sign_keys_);
    if (!keys.ok()) return Fail(keys.status());
    std::optional<TrustRootView> tr;
    if (!ctx_->settings.trust.empty()) {
      auto t = ctx_->LoadTrust();
      if (!t.ok()) return Fail(t.status());
      tr = std::move(*t);
    }
    auto conn = ctx_->Connect();
    if (!conn.ok()) return Fail(conn.status());
    std::vector<const SigningKey*> ptrs;
    for (const auto& k : *keys) ptrs.push_back(k.get());
    auto r = CoSign(**conn, sign_ref_, ptrs, tr ? &*tr : nullptr);
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"pending", r->pending},
                 {"signatures", r->signatures},
                 {"signatures_needed", r->signatures_needed}});
    } else {
      std::printf("%s %s %s: %s (%u of %u signatures)\n", r->name.c_str(), r->version.c_str(),
                  r->manifest.c_str(), r->pending ? "still pending" : "published", r->signatures,
                  r->signatures_needed);
    }
    return 0;
  }
  return 0;
}

}  // namespace cairn::client
