pub mod proto {
    tonic::include_proto!("fastchat.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fastchat_descriptor");
}
