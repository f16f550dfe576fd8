// Ctrl-C for the CLI: the first SIGINT cancels the operation that asked for
// it (a pull stops, keeps what it fetched and says how to resume); a second
// one, or one while nothing asked, ends the process at once with 130.
#pragma once

#include "cairn/clock.h"

namespace cairn::client {

// Call first in main(), before any thread starts: SIGINT is then taken by a
// thread of its own.
void InstallInterruptHandler();
// The process-wide cancellation a SIGINT fires; from now on the first SIGINT
// only fires it.
Cancellation* InterruptCancellation();

}  // namespace cairn::client
