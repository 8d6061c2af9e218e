//! Conversions from stored and in-memory state to the API's protobuf types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::db::{Marks, StoredMessage, ids::UserId};
use crate::proto::{
    ChatMessage, MessageStatus, SendMessageResponse, ServerEvent, StatusUpdate, server_event::Event,
};

/// A protobuf timestamp for `at`.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// The server's clock as a protobuf timestamp.
pub fn now_timestamp() -> Timestamp {
    timestamp(Utc::now())
}

/// A stored message with the status its sender sees, given the recipient's marks on the sender.
pub fn chat_message(message: &StoredMessage, recipient_marks: Marks) -> ChatMessage {
    ChatMessage {
        message_id: message.message_id.to_string(),
        client_msg_id: message.client_msg_id.clone(),
        from_user_id: message.sender_id.to_string(),
        to_user_id: message.recipient_id.to_string(),
        text: message.text.clone(),
        seq: message.seq.to_api(),
        sent_at: Some(timestamp(message.sent_at)),
        status: message_status(message, recipient_marks) as i32,
    }
}

/// SENT, DELIVERED or READ, from the recipient's marks on the sender.
pub fn message_status(message: &StoredMessage, recipient_marks: Marks) -> MessageStatus {
    if message.seq <= recipient_marks.read {
        MessageStatus::Read
    } else if message.seq <= recipient_marks.delivered {
        MessageStatus::Delivered
    } else {
        MessageStatus::Sent
    }
}

/// The ack of a stored message.
pub fn ack(message: &StoredMessage, status: MessageStatus) -> SendMessageResponse {
    SendMessageResponse {
        client_msg_id: message.client_msg_id.clone(),
        message_id: message.message_id.to_string(),
        seq: message.seq.to_api(),
        sent_at: Some(timestamp(message.sent_at)),
        status: status as i32,
    }
}

/// For the sender of `message`: `peer` has it (DELIVERED) or read it (READ), and every earlier
/// message of the conversation.
pub fn status_event(message: &StoredMessage, peer: UserId, status: MessageStatus) -> ServerEvent {
    server_event(Event::Status(StatusUpdate {
        message_id: message.message_id.to_string(),
        peer_user_id: peer.to_string(),
        seq: message.seq.to_api(),
        status: status as i32,
    }))
}

/// Wraps one event for a stream.
pub fn server_event(event: Event) -> ServerEvent {
    ServerEvent { event: Some(event) }
}
