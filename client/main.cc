// cairn: the Cairn command-line client. One *_cmd.cc per command group.
#include <grpc/support/log.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cairn/crypto.h"
#include "cairn/strings.h"
#include "cairn/tuning.h"
#include "bundle_cmd.h"
#include "cli_context.h"
#include "cli_util.h"
#include "completion.h"
#include "inspect_cmd.h"
#include "interrupt.h"
#include "publish_cmd.h"
#include "pull_cmd.h"
#include "store_cmd.h"
#include "trust_cmd.h"

namespace {

using cairn::client::Fail;
using cairn::client::PrintJson;

}  // namespace

int main(int argc, char** argv) {
  cairn::client::InstallInterruptHandler();  // before any thread starts
  cairn::TuneProcess(argv, /*max_arenas=*/2, /*huge_heap=*/false);
  // gRPC's own log lines (a failed TLS handshake, say) would break the
  // one-line error contract; what went wrong comes back as a status anyway.
  // CAIRN_GRPC_LOG=1 keeps them for debugging.
  if (const char* v = std::getenv("CAIRN_GRPC_LOG"); !v || std::string(v) != "1") {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  CLI::App app{"cairn: pull, publish and verify open model weights from Cairn mirrors"};
  app.require_subcommand(1);
  cairn::client::CliContext ctx;
  {
    absl::Status st = cairn::client::LoadSettings(&ctx.settings);
    if (!st.ok()) return Fail(st);
  }

  // keygen
  std::string key_out;
  auto* keygen = app.add_subcommand("keygen", "make an Ed25519 key pair (KEY, KEY.pub)");
  keygen->add_option("--out", key_out, "private key file to write (mode 0600)")->required();
  ctx.AddJson(keygen);

  cairn::client::TrustCommands trust_cmds(
      &app, &ctx.as_json, [&ctx](CLI::App* c) { ctx.AddNode(c); }, &ctx.settings.trust,
      &ctx.settings.config_path);
  cairn::client::PublishCommands publish_cmds(&app, &ctx);
  cairn::client::PullCommands pull_cmds(&app, &ctx);
  cairn::client::InspectCommands inspect_cmds(&app, &ctx);
  cairn::client::StoreCommands store_cmds(&app, &ctx);
  cairn::client::BundleCommands bundle_cmds(&app, &ctx);

  // completion bash: the script for `complete`, from this very definition.
  auto* completion = app.add_subcommand("completion", "print a shell completion script");
  std::string shell;
  completion->add_option("SHELL", shell, "bash")->required()->check(CLI::IsMember({"bash"}));
  app.set_version_flag("--version", std::string("cairn ") + CAIRN_VERSION);
  // An unknown command is named (CLI11 would say "A subcommand is required").
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      names.push_back(sub->get_name());
    }
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::string near = cairn::Nearest(argv[1], names);
      return Fail(absl::InvalidArgumentError(std::string("unknown command '") + argv[1] + "'" +
                                             (near.empty() ? "" : " (did you mean " + near + "?)") +
                                             "; cairn --help lists them"));
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  ctx.ApplyFlags();

  if (*keygen) {
    auto k = cairn::SigningKey::Generate();
    if (!k.ok()) return Fail(k.status());
    absl::Status st = (*k)->Save(key_out);
    if (!st.ok()) return Fail(st);
    if (ctx.as_json)
      PrintJson({{"key_id", (*k)->key_id()}, {"private", key_out}, {"public", key_out + ".pub"}});
    else
      std::printf("%s\n", (*k)->key_id().c_str());
    return 0;
  }
  if (*completion) {
    std::fputs(cairn::client::BashCompletion(app).c_str(), stdout);
    return 0;
  }
  if (trust_cmds.parsed()) return trust_cmds.Run([&] { return ctx.ConnectAll(); });
  if (publish_cmds.parsed()) return publish_cmds.Run();
  if (pull_cmds.parsed()) return pull_cmds.Run();
  if (inspect_cmds.parsed()) return inspect_cmds.Run();
  if (store_cmds.parsed()) return store_cmds.Run();
  if (bundle_cmds.parsed()) return bundle_cmds.Run();
  return 0;
}
