// Precompiled header: the heavy, stable includes every translation unit uses.
#pragma once
#include <torch/torch.h>
#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>
