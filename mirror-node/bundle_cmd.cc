#include "bundle_cmd.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_join.h"
#include "admin_cmd.h"
#include "cairn/bundle.h"
#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "spdlog/spdlog.h"

namespace cairn::node {
namespace {

absl::StatusOr<std::vector<std::string>> Absolute(const std::vector<std::string>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) {
    if (f.empty() || f.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError("a bundle path may not be empty or hold a newline");
    }
    std::error_code ec;
    out.push_back(std::filesystem::absolute(f, ec).lexically_normal().string());
    if (ec) return ErrnoStatus(ec.value(), "cannot resolve " + f);
  }
  return out;
}

absl::StatusOr<cairn::v1::ImportResponse> ImportFiles(Repository* repo,
                                                      const std::vector<std::string>& files,
                                                      Cancellation* cancel, bool progress) {
  CAIRN_ASSIGN_OR_RETURN(auto in, VolumeReader::Open(files));
  ImportOptions o;
  o.cancel = cancel;
  o.bundle_id = in->bundle_id();
  const uint64_t total = in->total_bytes();
  if (progress) {
    o.progress = [total](uint64_t done) {
      std::fprintf(stderr, "\rimporting: %llu of %llu MB",
                   static_cast<unsigned long long>(done >> 20),
                   static_cast<unsigned long long>(total >> 20));
    };
  }
  auto r = ImportBundle(repo, in.get(), o);
  if (progress) std::fprintf(stderr, "\n");
  return r;
}

}  // namespace

int ExportCmd(ServeConfig cfg, const NodeExportArgs& a) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto holder = ServingNode(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  if (*holder > 0) {
    return Fail(absl::FailedPreconditionError(
        StrCat("cairn-node (pid ", *holder, ") serves ", cfg.data,
               ": export from it with `cairn export ... --node ADDRESS`")));
  }
  uint64_t split = VolumeWriter::kNoSplit;
  if (!a.split.empty()) {
    auto s = ParseSize(a.split);
    if (!s.ok()) return Fail(s.status());
    split = *s;
  }
  ExportOptions o;
  o.refs = a.refs;
  o.have = a.base;
  if (!a.have_file.empty()) {
    auto text = ReadFileLimited(a.have_file, 64 << 20);
    if (!text.ok()) return Fail(text.status());
    auto inv = ParseInventory(*text);
    if (!inv.ok()) return Fail(Annotate(inv.status(), a.have_file));
    for (const auto& [name, digest] : inv->releases) o.have.push_back(name + "@" + digest);
    o.trust_after = inv->trust_version;
  }
  auto repo = OpenOffline(cfg, "exported");
  if (!repo.ok()) return Fail(repo.status());
  o.source = "cairn-node " + (*repo)->node_id();
  o.log = [](const std::string& line) { std::fprintf(stderr, "cairn-node: %s\n", line.c_str()); };
  auto w = VolumeWriter::Create(a.to, split, NewBundleId());
  if (!w.ok()) return Fail(w.status());
  auto src = RepositorySource(repo->get());
  auto r = ExportBundle(*src, o, w->get());
  if (!r.ok()) return Fail(r.status());
  std::printf("%s\n", DescribeExport(*r).c_str());
  return 0;
}

int ImportCmd(ServeConfig cfg, const std::vector<std::string>& files) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto paths = Absolute(files);
  if (!paths.ok()) return Fail(paths.status());
  // Volumes are checked here first: a wrong file is named at once.
  if (auto check = VolumeReader::Open(*paths); !check.ok()) return Fail(check.status());
  auto holder = ServingNode(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  std::string said;
  if (*holder > 0) {
    std::fprintf(stderr, "cairn-node (pid %d) serving %s imports the bundle\n", *holder,
                 cfg.data.c_str());
    auto answer = AskServingNode(cfg.data, *holder, "import", absl::StrJoin(*paths, "\n") + "\n");
    if (!answer.ok()) return Fail(answer.status());
    said = *answer;
  } else {
    auto repo = OpenOffline(cfg, "imported into");
    if (!repo.ok()) return Fail(repo.status());
    auto r = ImportFiles(repo->get(), *paths, nullptr, isatty(2));
    if (!r.ok()) return Fail(r.status());
    said = DescribeImport(*r);
  }
  std::printf("%s\n", said.c_str());
  return 0;
}

int InventoryCmd(ServeConfig cfg, const std::string& to) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto holder = ServingNode(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  std::string text;
  if (*holder > 0) {
    auto answer = AskServingNode(cfg.data, *holder, "inventory", "\n");
    if (!answer.ok()) return Fail(answer.status());
    text = *answer + "\n";
  } else {
    auto repo = OpenOffline(cfg, "listed");
    if (!repo.ok()) return Fail(repo.status());
    auto inv = InventoryOf(repo->get());
    if (!inv.ok()) return Fail(inv.status());
    text = FormatInventory(*inv);
  }
  if (to.empty() || to == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  absl::Status st = WriteFileAtomic(to, text, 0644);
  if (!st.ok()) return Fail(st);
  std::printf(
      "wrote the inventory of %s to %s: carry it to the exporting side (cairn export "
      "--have %s)\n",
      cfg.data.c_str(), to.c_str(), to.c_str());
  return 0;
}

size_t AnswerBundleRequests(Repository* repo, const std::string& data, Cancellation* cancel) {
  size_t n = AnswerRequests(data, "inventory", [&](const std::vector<std::string>&) {
    auto inv = InventoryOf(repo);
    if (!inv.ok()) return StrCat("inventory failed: ", inv.status().message());
    std::string text = FormatInventory(*inv);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return "ok " + text;
  });
  n += AnswerRequests(data, "import", [&](const std::vector<std::string>& lines) {
    std::vector<std::string> files;
    for (const auto& l : lines) {
      if (!l.empty()) files.push_back(l);
    }
    if (files.empty()) return std::string("no bundle named");
    for (const auto& f : files) {
      if (f[0] != '/') return std::string("not an absolute path: ") + f;
    }
    spdlog::info("import of {} started", files[0]);
    auto r = ImportFiles(repo, files, cancel, false);
    if (!r.ok()) {
      spdlog::error("import of {}: {}", files[0], r.status().ToString());
      return StrCat("import of ", files[0], " failed: ", r.status().message());
    }
    const std::string said = DescribeImport(*r);
    spdlog::info("import of {}: {}", files[0], said);
    return "ok " + said;
  });
  return n;
}

}  // namespace cairn::node
