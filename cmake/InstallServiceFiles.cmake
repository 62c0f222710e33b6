# Installs the systemd unit and the agent's config, at install time (cmake/ChorusInstall.cmake
# says why then). Given: CHORUS_SOURCE_DIR, CHORUS_STAGING_DIR (a folder of the build tree),
# CHORUS_BINDIR, CHORUS_SYSCONFDIR, CHORUS_SYSTEMD_UNIT_DIR; CMAKE_INSTALL_PREFIX is this
# install's.

# A relative directory is taken under the prefix, as install() takes it.
function(chorus_full_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

chorus_full_path(bindir "${CHORUS_BINDIR}")
chorus_full_path(unitdir "${CHORUS_SYSTEMD_UNIT_DIR}")
# GNUInstallDirs' rule for the system prefix: configuration lives in /etc, not /usr/etc.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND NOT IS_ABSOLUTE "${CHORUS_SYSCONFDIR}")
  set(etcdir "/${CHORUS_SYSCONFDIR}")
else()
  chorus_full_path(etcdir "${CHORUS_SYSCONFDIR}")
endif()

# The example unit names /usr/bin/chorus and /etc/chorus/chorus.json (test/cli/systemd.py
# checks that it still does): this install's paths replace them.
file(READ "${CHORUS_SOURCE_DIR}/examples/systemd/chorus.service" unit)
string(REPLACE "/usr/bin/chorus " "${bindir}/chorus " unit "${unit}")
string(REPLACE "/etc/chorus/chorus.json" "${etcdir}/chorus/chorus.json" unit "${unit}")
file(WRITE "${CHORUS_STAGING_DIR}/chorus.service" "${unit}")

file(INSTALL DESTINATION "${unitdir}" TYPE FILE
     FILES "${CHORUS_STAGING_DIR}/chorus.service")
# An operator's edited config is never overwritten by a later install into the live system (a
# package's dpkg keeps it as a conffile instead; a DESTDIR is a staging tree, always written).
set(config "${etcdir}/chorus/chorus.json")
if("$ENV{DESTDIR}" STREQUAL "" AND EXISTS "${config}")
  message(STATUS "Keeping: ${config} (the example is in the doc folder's examples/systemd)")
else()
  file(INSTALL DESTINATION "${etcdir}/chorus" TYPE FILE
       FILES "${CHORUS_SOURCE_DIR}/examples/systemd/chorus.json")
endif()
