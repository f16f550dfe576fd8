#include "logging.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cairn/strings.h"
#include "spdlog/sinks/rotating_file_sink.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

absl::Status SetUpLogging(const LogOptions& o) {
  std::shared_ptr<spdlog::logger> logger;
  if (o.file.empty()) {
    logger = std::make_shared<spdlog::logger>(
        "cairn-node", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  } else {
    // Checked first, for a one-line error (spdlog would throw, and create
    // missing folders on the way).
    int fd = ::open(o.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
      return absl::InvalidArgumentError(
          StrCat("log_file ", o.file, ": cannot open it for appending: ", std::strerror(errno)));
    }
    ::close(fd);
    try {
      auto sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
          o.file, static_cast<size_t>(o.max_bytes), static_cast<size_t>(o.files));
      logger = std::make_shared<spdlog::logger>("cairn-node", std::move(sink));
    } catch (const spdlog::spdlog_ex& e) {
      return absl::InvalidArgumentError(StrCat("log_file ", o.file, ": ", e.what()));
    }
    // Every line reaches the file at once: a crash loses none.
    logger->flush_on(spdlog::level::trace);
  }
  logger->set_level(spdlog::level::from_str(o.level));
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(spdlog::level::from_str(o.level));
  return absl::OkStatus();
}

}  // namespace cairn::node
