# Runs at install time (install(SCRIPT) in CMakeLists.txt), when the prefix is final: the one
# `cmake --install --prefix DIR` gives, or the one CPack stages a package with. Installs
#   conf/hcgw.conf              into SYSCONFDIR/hcgw/, unless a hcgw.conf is already there
#                               (an administrator's edited file is never overwritten);
#   deploy/systemd/hcgw.service into PREFIX/lib/systemd/system/, its paths pointed at this
#                               installation (the file in the sources names /usr/local/bin and
#                               /etc/hcgw).
# SYSCONFDIR follows GNUInstallDirs: /etc for the prefix /usr, PREFIX/etc otherwise.
# Set by install(CODE) before this runs: HCGW_SOURCE_DIR, HCGW_BINARY_DIR, HCGW_BINDIR,
# HCGW_SYSCONFDIR (both relative, as GNUInstallDirs gives them).
if(IS_ABSOLUTE "${HCGW_SYSCONFDIR}")
  set(etc "${HCGW_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc "/${HCGW_SYSCONFDIR}")
else()
  set(etc "${CMAKE_INSTALL_PREFIX}/${HCGW_SYSCONFDIR}")
endif()
set(bindir "${CMAKE_INSTALL_PREFIX}/${HCGW_BINDIR}")

if(EXISTS "$ENV{DESTDIR}${etc}/hcgw/hcgw.conf")
  message(STATUS "Keeping: $ENV{DESTDIR}${etc}/hcgw/hcgw.conf (the reference is conf/hcgw.conf)")
else()
  file(INSTALL "${HCGW_SOURCE_DIR}/conf/hcgw.conf" DESTINATION "${etc}/hcgw"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

file(READ "${HCGW_SOURCE_DIR}/deploy/systemd/hcgw.service" unit)
string(REPLACE "/usr/local/bin/hcgw" "${bindir}/hcgw" unit "${unit}")
string(REPLACE "/etc/hcgw/" "${etc}/hcgw/" unit "${unit}")
set(staged "${HCGW_BINARY_DIR}/generated/install/hcgw.service")
file(WRITE "${staged}" "${unit}")
file(INSTALL "${staged}" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
