// Application state container: roster, chats, group chat rooms, own presence and link status, with change subscribers.
import { emptyRoster, rosterReducer, type RosterAction, type RosterState, type Show } from './state/roster';
import { chatReducer, emptyChats, type ChatAction, type ChatState } from './state/chat';
import { emptyRooms, roomsReducer, type RoomAction, type RoomsState } from './state/rooms';

export type LinkState = 'online' | 'reconnecting' | 'offline';

export interface AppState {
  me: { jid: string; show: Exclude<Show, 'offline'>; status: string };
  link: { state: LinkState; message: string; transport: string };
  roster: RosterState;
  chats: ChatState;
  rooms: RoomsState;
  /** A short notice (e.g. "Request sent to bob@example.org"), or an error. */
  notice: { text: string; error: boolean } | null;
}

export function initialState(jid: string): AppState {
  return {
    me: { jid, show: 'online', status: '' },
    link: { state: 'online', message: '', transport: '' },
    roster: emptyRoster,
    chats: emptyChats,
    rooms: emptyRooms,
    notice: null,
  };
}

export class Store {
  private subs = new Set<(s: AppState) => void>();
  constructor(public state: AppState) {}

  subscribe(f: (s: AppState) => void): () => void {
    this.subs.add(f);
    return () => this.subs.delete(f);
  }

  set(patch: Partial<AppState>): void {
    this.state = { ...this.state, ...patch };
    this.notify();
  }

  roster(a: RosterAction): void {
    this.set({ roster: rosterReducer(this.state.roster, a) });
  }

  chat(a: ChatAction): void {
    this.set({ chats: chatReducer(this.state.chats, a) });
  }

  room(a: RoomAction): void {
    const rooms = roomsReducer(this.state.rooms, a);
    if (rooms !== this.state.rooms) this.set({ rooms });
  }

  private notify(): void {
    for (const f of this.subs) f(this.state);
  }
}
