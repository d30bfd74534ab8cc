// Force-included into every translation unit of the fuzz build (clang -include compat.h).
//
// Why: Debian's libtorch headers do not compile with clang 14-16 in C++20 mode against GCC 12's libstdc++: in C++20
// std::vector's members are constexpr, clang instantiates a constexpr member as soon as it is referenced, and
// ATen/core/List.h references std::vector<c10::IValue>'s move constructor while IValue is still incomplete ("arithmetic
// on a pointer to an incomplete type 'c10::IValue'"). GCC defers the instantiation to the end of the translation unit.
// The fuzz build therefore turns the C++20 constexpr-ness of the standard library off (-D_GLIBCXX20_CONSTEXPR= on the
// command line), which makes those members ordinary inline functions again, and these lines keep the two libraries
// that would then declare constexpr functions over non-literal types consistent:
//   - libstdc++'s operator""s is constexpr when __cpp_lib_constexpr_string says constexpr strings exist;
//   - fmt marks its buffers FMT_CONSTEXPR20.
// Nothing changes at run time: these functions are only ever called at run time by catq. The regular builds (GCC)
// do not use this file.
#pragma once
#include <version>
#include <type_traits>
#undef __cpp_lib_is_constant_evaluated
#include <fmt/core.h>
#undef FMT_CONSTEXPR20
#define FMT_CONSTEXPR20
