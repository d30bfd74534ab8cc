#include "cli/commands.h"
#include "core/error.h"

namespace catq::cli {
void register_generate(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("generate", "not implemented yet");
  sub->callback([] { fail(ErrorKind::Unsupported, "'generate' is not implemented yet"); });
}
}  // namespace catq::cli
