#include "cli/llm_cmds.h"

namespace catq::cli {

void add_perplexity_options(CLI::App* sub, PerplexityOptions& o) {
  sub->add_option("--window", o.window, "Perplexity window length in tokens")->capture_default_str();
  sub->add_option("--stride", o.stride, "Window stride (0 = window: non-overlapping; < window: overlapping, "
                  "each later window scores only its last `stride` tokens)")->capture_default_str();
  sub->add_flag("!--no-bos", o.prepend_bos, "Do not prepend BOS to each window (then a window of W tokens "
                "predicts the next W)");
  sub->add_option("--max-chars", o.max_chars, "Score only the first N characters of the text (0 = all)")
      ->capture_default_str();
  sub->add_option("--max-windows", o.max_windows, "Score at most N windows (0 = all)")->capture_default_str();
  sub->add_option("--batch", o.batch, "Windows per forward pass")->capture_default_str();
}

}  // namespace catq::cli
