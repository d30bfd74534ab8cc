#include "cli/commands.h"
#include "core/error.h"

namespace catq::cli {
void register_demo(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("demo", "not implemented yet");
  sub->callback([] { fail(ErrorKind::Unsupported, "'demo' is not implemented yet"); });
}
}  // namespace catq::cli
