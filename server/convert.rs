//! Conversions from stored and in-memory state to the API's protobuf types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::db::{Marks, StoredMessage, ids::UserId, reactions_of};
use crate::proto::{
    ChatMessage, MessageStatus, MessageUpdate, Reaction, ReplyPreview, SendMessageResponse,
    ServerEvent, StatusUpdate, server_event::Event,
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
        edited_at: message.edited_at.map(timestamp),
        deleted_at: message.deleted_at.map(timestamp),
        reply_to: message.reply_to_message_id.map(|answered| ReplyPreview {
            message_id: answered.to_string(),
            from_user_id: message
                .reply_to_sender_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            deleted: message.reply_to_text.is_none(),
            text: message.reply_to_text.clone().unwrap_or_default(),
        }),
        reactions: reactions_of(message)
            .into_iter()
            .map(|r| Reaction {
                emoji: r.emoji,
                user_ids: r.user_ids.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        version: message.version as u64,
    }
}

/// The new state of a changed message, for both its users (status as its sender sees it).
pub fn update_event(message: &StoredMessage, recipient_marks: Marks) -> ServerEvent {
    server_event(Event::Update(MessageUpdate {
        message: Some(chat_message(message, recipient_marks)),
    }))
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
