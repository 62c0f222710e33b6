# cmake -DINPUT=file -DOUTPUT=header -DNAME=kName -P Embed.cmake
# Writes a header holding INPUT's text as `inline constexpr std::string_view NAME`, so a file
# (the dashboard's HTML) ships inside the binary and is edited as the file it is.
file(READ "${INPUT}" text)
string(FIND "${text}" ")chorus_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} holds the raw string's delimiter )chorus_embed\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/Embed.cmake: edit that file, not this one.\n"
  "#pragma once\n#include <string_view>\n"
  "inline constexpr std::string_view ${NAME} = R\"chorus_embed(${text})chorus_embed\";\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
