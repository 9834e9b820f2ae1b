//! The dinomo control plane: key slots, the versioned cluster map, membership and the policies that
//! move ownership between compute nodes without moving data.
