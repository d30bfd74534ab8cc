#include "cli/commands.h"
#include "core/error.h"

namespace catq::cli {
void register_eval(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("eval", "not implemented yet");
  sub->callback([] { fail(ErrorKind::Unsupported, "'eval' is not implemented yet"); });
}
}  // namespace catq::cli
