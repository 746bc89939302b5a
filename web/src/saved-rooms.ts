// Rooms to rejoin after a page reload: the room JIDs and nicknames of one account, in localStorage (room passwords are not kept).

const PREFIX = 'rookery.rooms.';

export interface SavedRoom {
  jid: string;
  nick: string;
}

export function loadRooms(account: string, storage: Storage = localStorage): SavedRoom[] {
  try {
    const raw = storage.getItem(PREFIX + account);
    const list = raw ? (JSON.parse(raw) as unknown) : [];
    if (!Array.isArray(list)) return [];
    return list.filter((r): r is SavedRoom => !!r && typeof r.jid === 'string' && typeof r.nick === 'string' && r.jid.includes('@') && r.nick !== '');
  } catch {
    return [];
  }
}

export function saveRooms(account: string, rooms: SavedRoom[], storage: Storage = localStorage): void {
  if (rooms.length === 0) storage.removeItem(PREFIX + account);
  else storage.setItem(PREFIX + account, JSON.stringify(rooms));
}

export function forgetRooms(account: string, storage: Storage = localStorage): void {
  storage.removeItem(PREFIX + account);
}
