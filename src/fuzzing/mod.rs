//! Plain entry points for the fuzz targets in fuzz/.
