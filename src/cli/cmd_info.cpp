#include "cli/commands.h"
#include "core/error.h"

namespace catq::cli {
void register_info(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("info", "not implemented yet");
  sub->callback([] { fail(ErrorKind::Unsupported, "'info' is not implemented yet"); });
}
}  // namespace catq::cli
