// Command-line options shared by the LLM subcommands.
#pragma once
#include <CLI/CLI.hpp>

#include "eval/perplexity.h"

namespace catq::cli {

// Adds the perplexity-protocol options (--window, --stride, --no-bos, --max-chars, --max-windows, --batch).
void add_perplexity_options(CLI::App* sub, PerplexityOptions& opt);

}  // namespace catq::cli
