//! What the NATS sink and the JetStream outbox share about reaching a NATS
//! cluster.

/// The servers of a NATS URL list (`nats://a:4222,nats://b:4222`): the
/// client crate parses one URL per string, so a list is split here.
pub(crate) fn nats_servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_list_is_split_and_trimmed() {
        assert_eq!(
            super::nats_servers("nats://a:4222, nats://b:4222,"),
            ["nats://a:4222", "nats://b:4222"]
        );
        assert_eq!(super::nats_servers("nats://a:4222"), ["nats://a:4222"]);
    }
}
