# Shared CMake helpers: warnings, sanitizers, library/program/test declaration.

# ct3_setup_sanitizers(SPEC SCOPE): SPEC is "address,undefined", "thread", ... or empty.
# SCOPE "all" instruments every target; "retrieval" instruments everything except the models
# library (kb/, server/, client/, eval/, tests/) and only links the runtime into programs. The
# models library then compiles with exactly the Release flags, so ccache reuses the Release objects
# and a sanitizer build of the retrieval stack takes minutes instead of a full rebuild; libtorch
# itself is never instrumented anyway.
function(ct3_setup_sanitizers spec scope)
  set(CT3_SANITIZER_COMPILE_FLAGS "" PARENT_SCOPE)
  if(spec STREQUAL "")
    return()
  endif()
  string(REPLACE "," ";" sans "${spec}")
  foreach(s IN LISTS sans)
    if(NOT s MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "CT3_SANITIZE: unknown sanitizer '${s}' (expected address, undefined, thread or leak)")
    endif()
  endforeach()
  if(NOT scope MATCHES "^(all|retrieval)$")
    message(FATAL_ERROR "CT3_SANITIZE_SCOPE: expected 'all' or 'retrieval' (got '${scope}')")
  endif()
  set(flags -fsanitize=${spec} -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g)
  if(scope STREQUAL "all")
    string(REPLACE ";" " " flag_string "${flags}")
    set(CMAKE_C_FLAGS "${CMAKE_C_FLAGS} ${flag_string}" PARENT_SCOPE)
    set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${flag_string}" PARENT_SCOPE)
  else()
    set(CT3_SANITIZER_COMPILE_FLAGS "${flags}" PARENT_SCOPE)
  endif()
  set(CMAKE_EXE_LINKER_FLAGS "${CMAKE_EXE_LINKER_FLAGS} -fsanitize=${spec}" PARENT_SCOPE)
  set(CMAKE_SHARED_LINKER_FLAGS "${CMAKE_SHARED_LINKER_FLAGS} -fsanitize=${spec}" PARENT_SCOPE)
endfunction()

function(ct3_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(CT3_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # Retrieval-scoped sanitizer builds leave the models folder (library and its programs) alone.
  if(CT3_SANITIZER_COMPILE_FLAGS AND NOT CMAKE_CURRENT_SOURCE_DIR STREQUAL "${PROJECT_SOURCE_DIR}/models")
    target_compile_options(${target} PRIVATE ${CT3_SANITIZER_COMPILE_FLAGS})
  endif()
endfunction()

# ct3_add_program(NAME SOURCES ... LIBS ...): a command-line program installed to bin/.
function(ct3_add_program name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${P_SOURCES})
  ct3_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${P_LIBS})
  install(TARGETS ${name} RUNTIME DESTINATION bin)
endfunction()

# ct3_add_folder_programs(LIB): every *_main.cpp of the current folder becomes program `ct3-<name>`
# (underscores become dashes), linked to LIB.
function(ct3_add_folder_programs lib)
  file(GLOB programs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_main.cpp)
  foreach(src IN LISTS programs)
    get_filename_component(stem ${src} NAME_WE)
    string(REGEX REPLACE "_main$" "" prog ${stem})
    string(REPLACE "_" "-" prog ${prog})
    ct3_add_program(ct3-${prog} SOURCES ${src} LIBS ${lib})
    if(lib STREQUAL "ct3_models")
      # Same flags as the library: its precompiled torch header saves minutes per program.
      target_precompile_headers(ct3-${prog} REUSE_FROM ct3_models)
    endif()
  endforeach()
endfunction()

# ct3_add_component(NAME [DEPS lib...]): the library of one top-level folder (kb, server, client,
# eval) from its *.cpp files except programs, linked to ct3_models and DEPS, plus the folder's programs.
function(ct3_add_component name)
  cmake_parse_arguments(C "" "" "DEPS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  list(FILTER sources EXCLUDE REGEX "_main\\.cpp$")
  set(lib ct3_models)
  if(sources)
    set(lib ct3_${name})
    add_library(${lib} STATIC ${sources})
    ct3_target_defaults(${lib})
    target_link_libraries(${lib} PUBLIC ct3_models ${C_DEPS})
  endif()
  ct3_add_folder_programs(${lib})
endfunction()
