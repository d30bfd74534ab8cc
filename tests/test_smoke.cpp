#include <gtest/gtest.h>

#include "core/file_util.h"

TEST(BadInputFile, MissingFileIsIoError) {
  try {
    catq::read_file_bytes("/nonexistent/definitely/missing.bin");
    FAIL() << "expected an error";
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos);
  }
}
