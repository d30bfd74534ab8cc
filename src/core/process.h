// Running a helper program (the npm peers in tests and benches: ONNX Runtime, llama.cpp through Node).
#pragma once
#include <string>

namespace catq {

// Runs `cmd` through the shell and returns what it wrote to stdout (redirect stderr in `cmd` to capture it too);
// *code receives pclose()'s status (0 = success; -1 when the command could not be started).
std::string run_capture(const std::string& cmd, int* code);

}  // namespace catq
