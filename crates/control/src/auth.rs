//! Hotlink protection (being written).
