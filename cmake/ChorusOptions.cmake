# Compiler flags shared by every Chorus target, as an interface library so that third-party
# code (generated flatbuffers headers, Catch2) is not held to our warning level.
# OFF; ON (or address): AddressSanitizer and UndefinedBehaviorSanitizer; thread:
# ThreadSanitizer, for the code where the journal's writer thread meets the loop.
set(CHORUS_SANITIZE OFF CACHE STRING "Sanitizers: OFF, ON (address and undefined) or thread")
# Warnings are errors in the project's own scripts and CI (scripts/test turns this on), never in
# a user's or packager's plain build: another compiler's new warning must not stop it.
option(CHORUS_WERROR "Treat compiler warnings in Chorus's own code as errors" OFF)

add_library(chorus_warnings INTERFACE)
target_compile_options(chorus_warnings INTERFACE -Wall -Wextra)
if(CHORUS_WERROR)
  target_compile_options(chorus_warnings INTERFACE -Werror)
endif()

if(CHORUS_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(CHORUS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()

# libFuzzer targets for every decoder and parser that takes untrusted input (test/fuzz). The
# whole project, llhttp included, is compiled with coverage instrumentation and ASan + UBSan, so
# the fuzzer is guided by, and checks, the code the input reaches; only the fuzz executables
# link libFuzzer itself (-fsanitize=fuzzer), which brings its own main(). libFuzzer ships with
# clang (Debian: libclang-rt-dev), not with GCC. -O1 keeps the sanitizers' reports readable
# and executions fast; line tables (not full debug information) keep every report's file and
# line, and build faster. Every check is on whatever the build type: assert() in the libraries'
# headers (nlohmann_json's, flatbuffers'), and _GLIBCXX_ASSERTIONS, which bounds-checks the
# standard containers, catching reads ASan cannot see (inside a std::string's own buffer). Use a
# separate build directory.
option(CHORUS_FUZZ "Build the libFuzzer targets in test/fuzz (clang only)" OFF)
if(CHORUS_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CHORUS_FUZZ needs clang (libFuzzer ships with it): configure a new build "
                        "directory with -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -gline-tables-only -O1 -UNDEBUG -D_GLIBCXX_ASSERTIONS)
  add_link_options(-fsanitize=address,undefined)
endif()

# One static binary by default. Most of a dynamically linked agent's resident memory is shared
# library code the loader maps and faults in (measured on a 5-agent loopback cluster: 5.1 MiB
# RSS, of which 4.7 MiB were pages of libstdc++, libc, libm, libuv and libfmt; 0.5 MiB was the
# agent's own data). Linked statically with unused sections dropped, the same agent holds
# 2.5 MiB. Trade-off: glibc's getaddrinfo in a static binary loads the NSS modules of the glibc
# it was built with, so a binary copied to a machine with another glibc may fail to resolve
# seed names (the linker warns about this); build with -DCHORUS_STATIC=OFF to ship elsewhere.
# Sanitizers need their dynamic runtime, so CHORUS_SANITIZE and CHORUS_FUZZ turn this off.
option(CHORUS_STATIC "Link chorus and chorus-sim as static binaries" ON)
if(CHORUS_SANITIZE OR CHORUS_FUZZ)
  set(CHORUS_STATIC OFF)
endif()
if(CHORUS_STATIC)
  add_compile_options(-ffunction-sections -fdata-sections)
endif()

# Links an executable statically (when CHORUS_STATIC is on), dropping unreferenced sections.
function(chorus_static_executable target)
  if(CHORUS_STATIC)
    target_link_options(${target} PRIVATE -static -Wl,--gc-sections)
  endif()
endfunction()
